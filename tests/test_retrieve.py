"""mmgen.retrieve on the demo domain (tiny CLIP), plus the streaming search and the cache."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from omegaconf import open_dict
from PIL import Image
from test_clip import clip_config, draw, make_checkpoint

import mmgen.topk
from mmgen import retrieve
from mmgen.clip import ClipEncoder
from mmgen.contracts import load_reference, load_task, read_json
from mmgen.errors import StageStop
from mmgen.pool import EmbeddingStore, FileHasher
from mmgen.topk import select_top_k, subgroup_quotas

KIND = {"bar chart": "bar", "pie chart": "pie", "line chart": "line"}


# ---------------------------------------------------------------- quotas and the search


def test_quotas_round_up_per_subgroup():
    assert subgroup_quotas(240, [30, 24, 18], 1) == [100, 80, 60]
    assert subgroup_quotas(240, [30, 24, 18], 3) == [34, 27, 20]
    assert subgroup_quotas(150, [1, 1, 1], 5) == [10, 10, 10]  # exact: no float round-up
    with pytest.raises(ValueError, match="caps_per_image >= 1"):
        subgroup_quotas(10, [1], 0)


@pytest.mark.parametrize("leaks_win", [False, True],
                         ids=["leaks_rank_anywhere", "leaks_rank_first"])
def test_streaming_search_equals_brute_force(leaks_win, tmp_path, monkeypatch):
    monkeypatch.setattr(mmgen.topk, "WINDOW_FLOATS", 1024 * 16)  # several windows per shard
    rng = np.random.default_rng(0)
    dim, sizes = 16, [2500, 1800, 3000]
    queries = rng.standard_normal((3, dim)).astype(np.float32)
    guard = rng.standard_normal((12, dim)).astype(np.float32)
    if leaks_win:  # leaks match the queries best: more than the margin, so a second pass runs
        guard = np.repeat(queries, 4, axis=0) + 0.05 * guard
    guard /= np.linalg.norm(guard, axis=1, keepdims=True)
    layout, everything, offset = [], [], 0
    for index, size in enumerate(sizes):
        rows = rng.standard_normal((size, dim)).astype(np.float32)
        rows[::29] = guard[rng.integers(0, len(guard), len(rows[::29]))]  # planted leaks
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows.astype(np.float16)
        np.save(tmp_path / f"s{index}.npy", rows)
        chosen = np.sort(rng.choice(size, size * 2 // 3, replace=False))  # a sparse pool view
        layout.append((tmp_path / f"s{index}.npy", chosen, offset + np.arange(len(chosen))))
        everything.append(rows[chosen].astype(np.float32))
        offset += len(chosen)
    pool = np.concatenate(everything)
    quotas, min_score = [60, 500, 5000], 0.1

    chosen, counts = select_top_k(layout, lambda rows, _: rows @ queries.T, quotas, min_score,
                                  guard, 0.98)

    scores = pool @ queries.T
    best, best_score = scores.argmax(1), scores.max(1)
    leak = (pool @ guard.T).max(1) > 0.98
    assert leak.sum() > 100
    for subgroup, (positions, got_scores) in enumerate(chosen):
        eligible = np.flatnonzero((best == subgroup) & (best_score >= min_score) & ~leak)
        expected = eligible[np.argsort(-best_score[eligible], kind="stable")][:quotas[subgroup]]
        assert sorted(positions.tolist()) == sorted(expected.tolist())
        assert np.all(np.diff(got_scores) <= 0)
    assert counts["supply"][2] == ((best == 2) & (best_score >= min_score) & ~leak).sum()
    assert counts["supply"][2] < quotas[2]  # the short subgroup's supply is exact


def test_store_embeds_new_content_once_and_remembers_unreadable_files(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model")
    folder = tmp_path / "pool"
    folder.mkdir()
    files = [draw(folder / f"a{i}.png", (40 * i, 90, 200)) for i in range(5)]
    shutil.copy(files[0], folder / "copy_of_a0.png")
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    files += [folder / "copy_of_a0.png", folder / "broken.png"]
    hasher = FileHasher(tmp_path / "cache")
    store = EmbeddingStore(tmp_path / "cache", ClipEncoder(clip_config(checkpoint)))
    assert store.add(files, hasher.hash(files)) == {"embedded": 6, "cached": 1}
    assert len(store.failures) == 1
    files.append(draw(folder / "new.png", (1, 2, 3)))
    fresh = EmbeddingStore(tmp_path / "cache", ClipEncoder(clip_config(checkpoint)))
    assert fresh.add(files, hasher.hash(files)) == {"embedded": 1, "cached": 7}
    shard_ids, _ = fresh.locate(hasher.hash(files))
    assert (shard_ids[:6] >= 0).all() and shard_ids[6] == -1 and shard_ids[7] >= 0


# ---------------------------------------------------------------- the demo domain


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One cache for the module, so the demo pool is embedded once."""
    return tmp_path_factory.getbasetemp() / "demo_cache"


def run_retrieve(root: Path, out: Path, cache: Path, *overrides: str):
    """Run the retrieve stage on `root` like the CLI would; returns (task, stats)."""
    cfg = compose_config(["+experiment=demo", f"dataset.root={root}", *overrides], out)
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
    retrieve.run(cfg)
    return load_task(out / "task.json"), read_json(out / "stats.json")


def precision(task: dict, truth: dict) -> float:
    hits = [truth[path]["kind"] == KIND[group["keyword"]]
            for group in task["subgroups"] for path in group["candidate_image_paths"]]
    return sum(hits) / len(hits)


def candidates(task: dict) -> list[str]:
    return [path for group in task["subgroups"] for path in group["candidate_image_paths"]]


@pytest.fixture(scope="module")
def truth(demo) -> dict:
    return read_json(demo / "truth.json")


@pytest.fixture(scope="module")
def text_run(demo, cache, tmp_path_factory):
    return run_retrieve(demo, tmp_path_factory.mktemp("text1"), cache, "caps_per_image='1'")


def test_text_retrieval_fills_quotas_with_the_right_chart_kind(text_run, truth, demo):
    task, stats = text_run
    assert precision(task, truth) >= 0.9
    partition = stats["partition"]["subgroup_sizes"]
    quotas = subgroup_quotas(240, list(partition.values()), 1)
    for group, quota in zip(task["subgroups"], quotas):
        paths, scores = group["candidate_image_paths"], group["candidate_scores"]
        assert len(paths) == quota == stats["retrieve"]["subgroups"][group["keyword"]]["taken"]
        assert all(path.startswith("pool/") and (demo / path).is_file() for path in paths)
        assert scores == sorted(scores, reverse=True)
    assert len(set(candidates(task))) == len(candidates(task))  # one subgroup per image


def test_caps_per_image_3_retrieves_about_a_third(text_run, demo, cache, tmp_path):
    task_caps3, _ = run_retrieve(demo, tmp_path, cache)  # the demo's own caps=3
    ratio = len(candidates(task_caps3)) / len(candidates(text_run[0]))
    assert 0.3 <= ratio <= 0.37
    assert set(candidates(task_caps3)) <= set(candidates(text_run[0]))  # the best third


def test_random_baseline_is_clearly_less_precise(text_run, demo, cache, truth, tmp_path):
    task, _ = run_retrieve(demo, tmp_path / "random", cache, "caps_per_image='1'",
                           "retrieval=random")
    assert len(candidates(task)) == len(candidates(text_run[0]))
    assert precision(task, truth) <= precision(text_run[0], truth) - 0.3
    assert all("candidate_scores" not in group for group in task["subgroups"])
    again, _ = run_retrieve(demo, tmp_path / "again", cache, "caps_per_image='1'",
                            "retrieval=random")
    assert candidates(again) == candidates(task)  # same seed, same draw


@pytest.mark.parametrize("method", ["image_centroid", "image_knn"])
def test_image_queries_find_the_subgroup_kind(method, demo, cache, truth, tmp_path):
    task, _ = run_retrieve(demo, tmp_path, cache, f"retrieval={method}")
    assert precision(task, truth) >= 0.9


def test_a_quota_the_pool_cannot_fill_is_logged_not_padded(text_run, demo, cache, tmp_path,
                                                            caplog):
    first = text_run[0]["subgroups"][0]
    strict = first["candidate_scores"][len(first["candidate_scores"]) // 2]  # half qualify
    with caplog.at_level(logging.WARNING):
        task, stats = run_retrieve(demo, tmp_path, cache, "caps_per_image='1'",
                                   f"retrieval.min_score={strict}")
    group = task["subgroups"][0]
    counts = stats["retrieve"]["subgroups"][group["keyword"]]
    assert len(first["candidate_image_paths"]) // 2 <= counts["taken"] < counts["quota"]
    assert counts["taken"] == counts["supply"] == len(group["candidate_image_paths"])
    assert min(group["candidate_scores"]) >= strict
    assert f"subgroup '{group['keyword']}' needs {counts['quota']} images but only" in caplog.text
    assert "not padding" in caplog.text


# ---------------------------------------------------------------- leakage and bad files


@pytest.fixture(scope="module")
def polluted(demo, tmp_path_factory):
    """A copy of the demo whose pool also holds reference/eval copies, near copies, bad files."""
    root = tmp_path_factory.mktemp("polluted") / "data"
    shutil.copytree(demo, root)
    planted = {"reference": [], "eval": [], "near": [],
               "bad": ["pool/zz_empty.png", "pool/zz_truncated.png", "pool/zz_text.png"]}
    for name in ("reference", "eval"):
        for index, sample in enumerate(load_reference(root / f"{name}.json")["samples"]):
            target = f"pool/zz_{name}_{index:03d}.png"
            shutil.copy(root / sample["image_1"], root / target)
            planted[name].append(target)
            if name == "reference" and index % 6 == 0:
                image = Image.open(root / sample["image_1"]).convert("RGB")
                image.putpixel((0, 0), (1, 2, 3))
                image.save(root / f"pool/zz_near_{index:03d}.png")
                planted["near"].append(f"pool/zz_near_{index:03d}.png")
    (root / "pool/zz_empty.png").touch()
    (root / "pool/zz_truncated.png").write_bytes((root / "pool/img_00001.png").read_bytes()[:200])
    (root / "pool/zz_text.png").write_text("not an image")
    return root, planted


def test_reference_copies_never_come_back_and_bad_files_are_skipped(polluted, cache, tmp_path,
                                                                      caplog):
    root, planted = polluted
    with caplog.at_level(logging.INFO):
        task, stats = run_retrieve(root, tmp_path, cache, "caps_per_image='1'")
    assert not set(candidates(task)) & {path for paths in planted.values() for path in paths}
    excluded = stats["retrieve"]["excluded"]
    assert excluded["reference copies"] == len(planted["reference"]) == 72
    assert excluded["eval copies"] == len(planted["eval"]) > 0
    assert excluded["near duplicates"] >= 1
    assert stats["retrieve"]["unreadable"] == 3
    for path in planted["bad"]:
        assert f"skipping unreadable pool file {path}:" in caplog.text
    assert "reference copies" in caplog.text and "near duplicates" in caplog.text


def test_without_the_cosine_guard_near_copies_do_come_back(polluted, cache, tmp_path):
    root, planted = polluted
    task, stats = run_retrieve(root, tmp_path, cache, "caps_per_image='1'",
                               "retrieval.near_duplicate_cosine=null")
    chosen = set(candidates(task))
    assert chosen & set(planted["near"])  # so the guard above is what kept them out
    assert not chosen & set(planted["reference"] + planted["eval"])  # hashes still catch copies
    assert stats["retrieve"]["excluded"]["near duplicates"] == 0


def test_new_pool_images_are_embedded_and_nothing_else(polluted, cache, tmp_path):
    root, _ = polluted
    _, before = run_retrieve(root, tmp_path / "before", cache, "caps_per_image='1'")
    draw(root / "pool" / "zz_new_1.png", (250, 10, 10))
    draw(root / "pool" / "zz_new_2.png", (10, 250, 10))
    _, after = run_retrieve(root, tmp_path / "after", cache, "caps_per_image='1'")
    assert after["retrieve"]["embedding"] == {"embedded": 2,
                                              "cached": before["retrieve"]["pool_files"]}
    for name in ("zz_new_1.png", "zz_new_2.png"):
        (root / "pool" / name).unlink()


# ---------------------------------------------------------------- sharding


def test_shards_embed_slices_and_a_plain_run_merges_them(demo, text_run, tmp_path):
    cache = tmp_path / "fresh_cache"
    for index in (0, 1):
        cfg = compose_config(["+experiment=demo", f"dataset.root={demo}", "shard.count=2",
                              f"shard.index={index}"], tmp_path / "shards")
        with open_dict(cfg):
            cfg.paths.cache_dir = str(cache)
        with pytest.raises(StageStop, match=f"pool shard {index + 1}/2 embedded"):
            retrieve.run(cfg)
        assert not (tmp_path / "shards" / "task.json").exists()  # a shard job selects nothing
    stats = read_json(tmp_path / "shards" / "stats.json")
    assert stats["retrieve_shard_0_of_2"]["embedded"] + stats["retrieve_shard_1_of_2"][
        "embedded"] == 640
    task, merged = run_retrieve(demo, tmp_path / "merged", cache, "caps_per_image='1'")
    assert merged["retrieve"]["embedding"]["embedded"] == 0
    assert candidates(task) == candidates(text_run[0])


@pytest.mark.slow
def test_joblib_multirun_shards_then_merge(demo, tmp_path):
    common = ["+experiment=demo", f"dataset.root={demo}", f"paths.cache_dir={tmp_path / 'c'}",
              "caps_per_image='1'"]
    sweep = [sys.executable, "-m", "mmgen.retrieve", "-m", *common, "shard.count=2",
             "shard.index=0,1", "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    subprocess.run(sweep, check=True, cwd=tmp_path, capture_output=True, timeout=600)
    merge = [sys.executable, "-m", "mmgen.retrieve", *common, f"paths.out_dir={tmp_path / 'o'}"]
    subprocess.run(merge, check=True, cwd=tmp_path, capture_output=True, timeout=600)
    stats = read_json(tmp_path / "o" / "stats.json")
    assert stats["retrieve"]["embedding"]["embedded"] == 0
    assert sum(g["taken"] for g in stats["retrieve"]["subgroups"].values()) == 240
