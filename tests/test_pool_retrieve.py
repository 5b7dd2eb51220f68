"""Retrieve over every kind of pool: the same candidates from a folder, tar shards, a list file
and a Hugging Face dataset; a pool with nothing usable stops with the reasons."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import compose_config
from helpers.pools import pack_shards, pool_images, write_parquet_dataset
from omegaconf import open_dict

from mmgen import retrieve
from mmgen.contracts import load_reference, load_task, read_json
from mmgen.errors import UserError
from mmgen.pool import EXTRACT_DIR, content_hash

# a small demo domain: 60 pool images (50 charts), 10 reference charts, 3 eval charts
COUNTS = {"reference": {"bar": 4, "line": 3, "pie": 3}, "eval": {"bar": 1, "line": 1, "pie": 1},
          "pool": {"bar": 20, "line": 15, "pie": 15, "map": 3, "shapes": 3, "noise": 2,
                   "table": 2}}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A small demo whose pool is also packed as tar shards, listed in a file, and saved as a
    Hugging Face dataset; five reference images are planted among the shards."""
    from mmgen.demo.build import build_demo

    data = tmp_path_factory.mktemp("pools") / "data"
    build_demo(data, seed=0, counts=COUNTS)
    images = pool_images(data / "pool")
    references = [data / sample["image_1"]
                  for sample in load_reference(data / "reference.json")["samples"][:5]]
    pack_shards(images + references, str(data / "shards" / "%03d.tar"), per_shard=25)
    lines = [f"../pool/{path.name}" for path in images]
    (data / "lists").mkdir()
    (data / "lists" / "pool.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_parquet_dataset(images, data / "hfpool")
    return data


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pool_cache")


def run_retrieve(root: Path, out: Path, cache: Path, pool: str) -> tuple[dict, dict]:
    cfg = compose_config(["+experiment=demo", f"dataset.root={root}", f"dataset.pool='{pool}'",
                          "caps_per_image='1'"], out)
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
    retrieve.run(cfg)
    return load_task(out / "task.json"), read_json(out / "stats.json")["retrieve"]


def chosen_content(task: dict, root: Path) -> list[list[str]]:
    """Each subgroup's candidates by content hash, in order."""
    return [[content_hash(root / path) for path in group["candidate_image_paths"]]
            for group in task["subgroups"]]


@pytest.fixture(scope="module")
def folder_run(root, cache, tmp_path_factory):
    return run_retrieve(root, tmp_path_factory.mktemp("folder"), cache, "pool")


def test_tar_shards_give_the_same_candidates_as_the_folder(folder_run, root, cache, tmp_path):
    task, stats = run_retrieve(root, tmp_path, cache, "shards/{000..009}.tar")
    assert chosen_content(task, root) == chosen_content(folder_run[0], root)
    assert stats["embedding"]["embedded"] == 0  # content-keyed: the folder run embedded them all
    assert stats["excluded"]["reference copies"] == 5  # the leakage guard sees inside shards
    assert stats["skipped_while_listing"] == 7  # {000..009}: shards 003-009 were never written
    for group in task["subgroups"]:
        for path, source in zip(group["candidate_image_paths"], group["candidate_sources"]):
            assert path.startswith(f"{EXTRACT_DIR}/") and (root / path).is_file()
            assert Path(source["shard"]).parent == root / "shards"
            assert source["member"] == f"{source['key']}.png"


@pytest.mark.parametrize("pool", ["lists/pool.txt", "hf://hfpool:train:image"],
                         ids=["list_file", "hf_dataset"])
def test_list_files_and_datasets_give_the_same_candidates(pool, folder_run, root, cache,
                                                          tmp_path):
    task, stats = run_retrieve(root, tmp_path, cache, pool)
    assert chosen_content(task, root) == chosen_content(folder_run[0], root)
    assert stats["embedding"]["embedded"] == 0
    if pool.startswith("hf://"):
        source = task["subgroups"][0]["candidate_sources"][0]
        assert source["split"] == "train" and source["column"] == "image"
        assert source["dataset"] == str(root / "hfpool")
    else:  # files under dataset.root stay where they are
        assert chosen_content(task, root) and task == folder_run[0]


def test_a_dataset_column_that_is_not_there_is_named(root, cache, tmp_path):
    with pytest.raises(UserError, match=r"has no column 'picture'; its columns: image, caption"):
        run_retrieve(root, tmp_path, cache, "hf://hfpool:train:picture")


@pytest.mark.parametrize("kind", ["empty", "unusable"])
def test_a_pool_with_no_usable_image_stops_retrieve_saying_why(kind, root, cache, tmp_path):
    pool = tmp_path / "bad_pool"
    pool.mkdir()
    (pool / "notes.txt").write_text("not an image")
    if kind == "unusable":
        (pool / "empty.png").touch()
        (pool / "text.png").write_text("not a png")
        (pool / "gone.png").symlink_to(tmp_path / "nowhere.png")
        (pool / "loop.png").symlink_to(pool / "loop.png")
        shutil.copy(root / load_reference(root / "reference.json")["samples"][0]["image_1"],
                    pool / "reference_copy.png")
    with pytest.raises(UserError) as raised:
        run_retrieve(root, tmp_path / "out", cache, str(pool))
    message = str(raised.value)
    assert f"the pool (folder '{pool}' under dataset.root '{root}') has no usable image" in message
    assert "1 files without an image extension ignored" in message
    if kind == "empty":
        assert ": 0 images listed;" in message
    else:
        assert ": 3 images listed;" in message
        assert "2 entries skipped while listing (1 dangling symlink, 1 symlink loop)" in message
        assert "2 images unreadable (1 empty file, 1 not an image Pillow can read)" in message
        assert "1 reference copies" in message


def test_a_run_on_tar_shards_ends_with_a_dataset_and_a_report(root, cache, tmp_path):
    from mmgen import pipeline
    from mmgen.contracts import load_dataset

    cfg = compose_config(["+experiment=demo", f"dataset.root={root}",
                          "dataset.pool='shards/{000..002}.tar'", "total_gen=12"], tmp_path)
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
    report = pipeline.run(cfg)
    samples = load_dataset(tmp_path / "data.json")["samples"]
    assert samples and all(sample["image_1"].startswith(f"{EXTRACT_DIR}/") for sample in samples)
    assert all((root / sample["image_1"]).is_file() for sample in samples)
    assert report.is_file() and EXTRACT_DIR in report.read_text(encoding="utf-8")
