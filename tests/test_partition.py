"""mmgen.partition on the demo domain (tiny CLIP), the refset ablations, and seed task files."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import compose_config
from helpers.seed_files import seed_task_file
from omegaconf import open_dict

from mmgen import partition, retrieve
from mmgen.contracts import ContractError, load_task, read_json, write_json

KIND = {"bar chart": "bar", "pie chart": "pie", "line chart": "line"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "demo_cache"


def run_partition(root: Path, out: Path, cache: Path, *overrides: str) -> dict:
    """Run the partition stage like the CLI would; returns partition.json."""
    cfg = compose_config(["+experiment=demo", f"dataset.root={root}", *overrides], out)
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
    partition.run(cfg)
    return load_task(out / "partition.json")


def sizes(task: dict) -> dict[str, int]:
    return {group["keyword"]: len(group["reference_sample_idx"]) for group in task["subgroups"]}


@pytest.fixture(scope="module")
def full(demo, cache, tmp_path_factory) -> dict:
    return run_partition(demo, tmp_path_factory.mktemp("full"), cache)


def test_zero_shot_partition_matches_the_truth(full, demo, caplog):
    truth = read_json(demo / "truth.json")
    assigned = [(KIND[group["keyword"]], truth[full["samples"][index]["image_1"]]["kind"])
                for group in full["subgroups"] for index in group["reference_sample_idx"]]
    assert len(assigned) == len(full["samples"]) == 72  # every sample in exactly one subgroup
    accuracy = sum(kind == true_kind for kind, true_kind in assigned) / len(assigned)
    assert accuracy >= 0.9
    assert all(group["candidate_image_paths"] == [] for group in full["subgroups"])


def test_counts_per_keyword_are_logged(demo, cache, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        task = run_partition(demo, tmp_path, cache, "seed=5")  # a new fingerprint: it runs
    for keyword, count in sizes(task).items():
        assert f"{keyword}: {count}" in caplog.text


def test_a_keyword_without_images_is_dropped_with_a_warning(demo, cache, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        task = run_partition(demo, tmp_path, cache,
                             "dataset.keywords=[bar chart,pie chart,line chart,map]")
    assert "map" not in sizes(task)
    assert "'map'" in caplog.text and "dropping" in caplog.text


def test_no_partition_puts_every_sample_in_one_subgroup(demo, cache, tmp_path):
    task = run_partition(demo, tmp_path, cache, "refset=no_partition")
    assert sizes(task) == {"bar chart or pie chart or line chart": 72}


def test_small_keeps_a_tenth_of_each_subgroup(full, demo, cache, tmp_path):
    task = run_partition(demo, tmp_path / "a", cache, "refset=small")
    expected = {keyword: -(-count // 10) for keyword, count in sizes(full).items()}
    assert sizes(task) == expected
    for group, full_group in zip(task["subgroups"], full["subgroups"]):
        assert set(group["reference_sample_idx"]) <= set(full_group["reference_sample_idx"])
    again = run_partition(demo, tmp_path / "b", tmp_path / "cache", "refset=small")  # recomputed
    other_seed = run_partition(demo, tmp_path / "c", cache, "refset=small", "seed=1")
    assert again["subgroups"] == task["subgroups"]
    assert other_seed["subgroups"] != task["subgroups"]


def test_imbalanced_cuts_the_largest_subgroup_to_the_smallest(full, demo, cache, tmp_path):
    task = run_partition(demo, tmp_path, cache, "refset=imbalanced")
    before, after = sizes(full), sizes(task)
    largest = max(before, key=before.get)
    assert after[largest] == min(before.values())
    assert {k: v for k, v in after.items() if k != largest} == {
        k: v for k, v in before.items() if k != largest}


# ours in tests/data (6 references among 16 candidates), then the seed's AI2D file (98 of 3922)
@pytest.mark.parametrize("name, kept", [("diagram_task_file.json", 16 - 6),
                                        ("ai2d_task_file.json", 3922 - 98)])
def test_seed_task_file_is_used_and_its_candidates_kept(name, kept, tmp_path):
    source = seed_task_file(name)
    overrides = ["dataset=ai2d", f"dataset.root={tmp_path}", f"task_file={source}",
                 "check_images=false", "dataset.eval=null"]  # no images, no eval set here
    cfg = compose_config(overrides, tmp_path / "out")
    with open_dict(cfg):
        cfg.paths.cache_dir = str(tmp_path / "cache")
    retrieve.run(cfg)  # runs partition first; the file's candidates need no model at all
    task, original = load_task(tmp_path / "out" / "task.json"), load_task(source)
    group, seed_group = task["subgroups"][0], original["subgroups"][0]
    assert group["reference_sample_idx"] == seed_group["reference_sample_idx"]
    # the file lists its reference images among its candidates: the leakage guard drops
    # exactly those and keeps the rest in order
    references = {f"{task['image_folder']}/{s['image_1']}" for s in task["samples"]}
    assert group["candidate_image_paths"] == [
        p for p in seed_group["candidate_image_paths"] if p not in references]
    assert len(group["candidate_image_paths"]) == kept


def test_task_file_candidates_copying_a_reference_image_are_dropped(demo, cache, tmp_path):
    reference = read_json(demo / "reference.json")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "reference").symlink_to(demo / "reference")
    (tmp_path / "root" / "pool").symlink_to(demo / "pool")
    first_pool = min((demo / "pool").iterdir()).name
    copy = tmp_path / "copy" / "renamed.png"  # same bytes as reference sample 0, another name
    copy.parent.mkdir()
    copy.write_bytes((demo / reference["samples"][0]["image_1"]).read_bytes())
    (tmp_path / "root" / "copies").symlink_to(copy.parent)
    reference["subgroups"] = [{
        "keyword": "bar chart", "reference_sample_idx": [0, 1],
        "candidate_image_paths": [reference["samples"][1]["image_1"], "copies/renamed.png",
                                  f"pool/{first_pool}"],
        "candidate_scores": [0.9, 0.8, 0.7]}]
    write_json(tmp_path / "task_in.json", reference)
    cfg = compose_config(["+experiment=demo", f"dataset.root={tmp_path / 'root'}",
                          "dataset.eval=null", f"task_file={tmp_path / 'task_in.json'}"],
                         tmp_path / "out")
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
    retrieve.run(cfg)
    group = load_task(tmp_path / "out" / "task.json")["subgroups"][0]
    assert group["candidate_image_paths"] == [f"pool/{first_pool}"]
    assert group["candidate_scores"] == [0.7]


# ours in tests/data (5 samples, 7 candidates), then the seed's spatial map file (300, 999)
@pytest.mark.parametrize("name, images", [("map_task_file.json", 5 + 7),
                                          ("spatial_map_task_file.json", 300 + 999)])
def test_seed_task_file_images_are_checked(name, images, tmp_path):
    cfg = compose_config(["dataset=spatial_map", f"dataset.root={tmp_path}", "dataset.eval=null",
                          f"task_file={seed_task_file(name)}"], tmp_path / "o")
    with open_dict(cfg):
        cfg.paths.cache_dir = str(tmp_path / "cache")
    with pytest.raises(ContractError, match="sample 0 field 'image_1'.*not found under dataset"
                       ) as caught:
        partition.run(cfg)
    # none of its samples' or candidates' images is here: one error counts them all
    message = str(caught.value)
    assert f"({images} of {images} images missing; also sample 1 field 'image_1'" in message
    assert message.count("field 'image_1'") == 5  # the first missing image and four more


def test_task_file_without_candidates_gets_them_retrieved(demo, cache, tmp_path):
    reference = read_json(demo / "reference.json")
    truth = read_json(demo / "truth.json")
    reference["subgroups"] = [
        {"keyword": keyword, "candidate_image_paths": [], "reference_sample_idx": [
            i for i, s in enumerate(reference["samples"]) if truth[s["image_1"]]["kind"] == kind]}
        for keyword, kind in KIND.items()]
    write_json(tmp_path / "task_in.json", reference)
    cfg = compose_config(["+experiment=demo", f"dataset.root={demo}",
                          f"task_file={tmp_path / 'task_in.json'}"], tmp_path / "out")
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
    retrieve.run(cfg)
    task = load_task(tmp_path / "out" / "task.json")
    assert sizes(task) == {"bar chart": 30, "pie chart": 18, "line chart": 24}
    assert all(group["candidate_image_paths"] for group in task["subgroups"])
