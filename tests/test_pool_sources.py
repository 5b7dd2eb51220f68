"""Pool sources: folders with symlinks, list files, tar shards and datasets, listed once."""
from __future__ import annotations

import io
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from helpers.pools import pack_shards
from PIL import Image

from mmgen.errors import UserError
from mmgen.imageio import open_image
from mmgen.pool import (
    EXTRACT_DIR,
    FileHasher,
    bytes_hash,
    content_hash,
    open_pool,
    place_candidates,
    pool_listing,
    retrieval_inputs_digest,
)
from mmgen.pool.folders import FolderPool


def draw(path: Path, color: tuple[int, int, int], size=(32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def pool_cfg(root: Path, pool: str, tmp_path: Path):
    return compose_config([f"dataset.root={root}", f"dataset.pool='{pool}'"], tmp_path / "out")


def names(cfg, index: int = 0, count: int = 1) -> list[str]:
    return [item.name for item in pool_listing(open_pool(cfg), index, count).items]


# ---------------------------------------------------------------- folders and symlinks


def test_symlinked_files_folders_and_pool_folder_are_followed(tmp_path):
    outside = tmp_path / "elsewhere"
    draw(outside / "linked_dir" / "b.png", (0, 200, 0))
    draw(outside / "c.png", (0, 0, 200))
    root = tmp_path / "data"
    draw(root / "real_pool" / "a.png", (200, 0, 0))
    (root / "real_pool" / "linked_dir").symlink_to(outside / "linked_dir")
    (root / "real_pool" / "c_link.png").symlink_to(outside / "c.png")
    (root / "pool").symlink_to(root / "real_pool")  # the pool folder itself is a link

    cfg = pool_cfg(root, "pool", tmp_path)
    assert names(cfg) == ["pool/a.png", "pool/c_link.png", "pool/linked_dir/b.png"]
    listing = pool_listing(open_pool(cfg))
    assert listing.skipped == []
    assert open_pool(cfg).hashes(listing, FileHasher(tmp_path / "cache")) == [
        content_hash(outside / name) for name in ("../data/real_pool/a.png", "c.png",
                                                   "linked_dir/b.png")]


def test_loops_and_dangling_links_are_skipped_with_a_warning(tmp_path, caplog):
    root = tmp_path / "data"
    draw(root / "pool" / "good.png", (10, 20, 30))
    (root / "pool" / "dangling.png").symlink_to(root / "gone.png")
    (root / "pool" / "loop_a.png").symlink_to(root / "pool" / "loop_b.png")
    (root / "pool" / "loop_b.png").symlink_to(root / "pool" / "loop_a.png")
    (root / "pool" / "sub").mkdir()
    (root / "pool" / "sub" / "back").symlink_to(root / "pool")  # a folder loop
    with caplog.at_level(logging.WARNING):
        listing = pool_listing(open_pool(pool_cfg(root, "pool", tmp_path)))
    assert [item.name for item in listing.items] == ["pool/good.png"]
    reasons = dict(listing.skipped)
    assert reasons["pool/dangling.png"].startswith("dangling symlink (its target")
    assert str(root / "gone.png") in reasons["pool/dangling.png"]
    assert reasons["pool/loop_a.png"].startswith("symlink loop")
    assert reasons["pool/loop_b.png"].startswith("symlink loop")
    assert reasons["pool/sub/back"] == "symlink loop (leads back to its parent 'pool')"
    for name in reasons:
        assert f"pool: skipping {name}: " in caplog.text


def test_the_pool_is_listed_once_per_process_until_it_changes(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for index in range(3):
        draw(root / "pool" / f"sub{index}" / "a.png", (index, 0, 0))
    cfg = pool_cfg(root, "pool", tmp_path)
    walks = []
    original = FolderPool.list_all
    monkeypatch.setattr(FolderPool, "list_all", lambda self: walks.append(1) or original(self))
    first = retrieval_inputs_digest(cfg)
    assert retrieval_inputs_digest(cfg) == first and names(cfg) and len(walks) == 1
    draw(root / "pool" / "sub1" / "new.png", (9, 9, 9))  # a new file changes its folder's mtime
    assert retrieval_inputs_digest(cfg) != first and len(walks) == 2
    assert "pool/sub1/new.png" in names(cfg) and len(walks) == 2


def test_shard_jobs_split_a_folder_pool_between_them(tmp_path):
    root = tmp_path / "data"
    for index in range(7):
        draw(root / "pool" / f"{index}.png", (index, 1, 1))
    cfg = pool_cfg(root, "pool", tmp_path)
    parts = [names(cfg, index, 3) for index in range(3)]
    assert sorted(name for part in parts for name in part) == names(cfg) and [len(part) for part in parts] == [3, 2, 2]


# ---------------------------------------------------------------- list files


def test_list_file_pool_reads_paths_and_downloaded_urls(tmp_path, caplog):
    root = tmp_path / "data"
    draw(root / "images" / "a.png", (1, 2, 3))
    outside = draw(tmp_path / "downloads" / "b.jpg", (4, 5, 6))
    (root / "lists").mkdir()
    (root / "lists" / "pool.txt").write_text(
        "# one image per line\n"
        "../images/a.png\n"
        f"https://example.org/b.jpg\t{outside}\n"
        "https://example.org/never_downloaded.jpg\n"
        "../images/missing.png\n"
        "../images/a.png\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        listing = pool_listing(open_pool(pool_cfg(root, "lists/pool.txt", tmp_path)))
    assert [item.name for item in listing.items] == ["images/a.png", str(outside)]
    assert listing.items[1].url == "https://example.org/b.jpg"
    reasons = dict(listing.skipped)
    assert "download it first" in reasons["lists/pool.txt line 4"]
    assert reasons["lists/pool.txt line 5 ('../images/missing.png')"] == "file not found"
    assert "lists/pool.txt line 4" in caplog.text

    paths, sources = place_candidates(listing.items, [content_hash(root / "images/a.png"),
                                                      content_hash(outside)], root)
    assert paths == ["images/a.png", f"{EXTRACT_DIR}/{content_hash(outside)}.jpg"]
    assert (root / paths[1]).read_bytes() == outside.read_bytes()  # outside root: copied in
    assert sources[1] == {"file": str(outside), "url": "https://example.org/b.jpg"}


# ---------------------------------------------------------------- tar shards


def test_tar_shards_index_members_split_by_file_and_skip_corrupt_ones(tmp_path, caplog):
    root = tmp_path / "data"
    images = [draw(tmp_path / "src" / f"{index}.png", (index * 20, 5, 5)) for index in range(5)]
    pack_shards(images, str(root / "shards" / "%03d.tar"), per_shard=2)  # 3 shards: 2 + 2 + 1
    with tarfile.open(root / "shards" / "000.tar") as archive:  # a copy cut inside an image
        cut = archive.getmember("000001.png").offset_data + 20
    (root / "shards" / "003.tar").write_bytes((root / "shards" / "000.tar").read_bytes()[:cut])
    cfg = pool_cfg(root, "shards/{000..004}.tar", tmp_path)
    with caplog.at_level(logging.WARNING):
        listing = pool_listing(open_pool(cfg))
    assert [item.name for item in listing.items] == [
        "shards/000.tar#000000.png", "shards/000.tar#000001.png", "shards/001.tar#000002.png",
        "shards/001.tar#000003.png", "shards/002.tar#000004.png",
        "shards/003.tar#000000.png"]  # the cut copy keeps the image before the cut
    expected = [*images, images[0]]
    assert listing.hashes == [content_hash(path) for path in expected]
    assert [item.read_bytes() for item in listing.items] == [p.read_bytes() for p in expected]
    reasons = dict(listing.skipped)
    assert "shard not readable" in reasons["shards/004.tar"]  # brace-expanded, never written
    assert reasons["shards/003.tar#000001.png"].startswith("truncated member")
    assert reasons["shards/003.tar"].startswith("cut short after")
    assert "skipping shards/004.tar: shard not readable" in caplog.text

    jobs = [[item.name for item in pool_listing(open_pool(cfg), index, 2).items]
            for index in range(2)]
    assert jobs == [listing_names(listing, "000", "002"), listing_names(listing, "001", "003")]

    paths, sources = place_candidates(listing.items[2:3], listing.hashes[2:3], root)
    assert paths == [f"{EXTRACT_DIR}/{content_hash(images[2])}.png"]
    assert (root / paths[0]).read_bytes() == images[2].read_bytes()
    assert sources == [{"shard": str(root / "shards" / "001.tar"), "key": "000002",
                        "member": "000002.png"}]


def listing_names(listing, *shards: str) -> list[str]:
    return [item.name for item in listing.items if item.name.split("#")[0][-7:-4] in shards]


def test_a_compressed_or_foreign_shard_is_skipped_with_the_reason(tmp_path):
    root = tmp_path / "data"
    (root / "shards").mkdir(parents=True)
    with tarfile.open(root / "shards" / "0.tar.gz", "w:gz") as archive:
        data = io.BytesIO()
        Image.new("RGB", (4, 4)).save(data, "PNG")
        info = tarfile.TarInfo("0.png")
        info.size = len(data.getvalue())
        archive.addfile(info, io.BytesIO(data.getvalue()))
    listing = pool_listing(open_pool(pool_cfg(root, "shards/0.tar.gz", tmp_path)))
    assert listing.items == []
    assert "not a readable uncompressed tar" in dict(listing.skipped)["shards/0.tar.gz"]


# ---------------------------------------------------------------- decoding


def test_drafted_jpeg_decode_keeps_the_size_and_the_look(tmp_path):
    gradient = np.linspace(0, 255, 1024, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient, (1024, 1)), np.tile(gradient[:, None], (1, 1024)),
                       np.full((1024, 1024), 90, np.uint8)], axis=-1)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=90)
    full = open_image(tmp_path / "big.jpg", max_side=448)
    drafted = open_image((tmp_path / "big.jpg").read_bytes(), max_side=448, draft=True)
    assert drafted.size == full.size == (448, 448)
    difference = np.abs(np.asarray(full, np.int16) - np.asarray(drafted, np.int16))
    assert difference.mean() < 2.0


def test_hashes_of_bytes_and_files_agree(tmp_path):
    path = draw(tmp_path / "a.png", (1, 1, 1))
    assert bytes_hash(path.read_bytes()) == content_hash(path)


def test_a_missing_pool_names_every_kind_it_could_be(tmp_path):
    with pytest.raises(UserError, match=r"dataset.pool '.*nowhere' not found: .* a folder, a "
                                        r"text file listing image paths, tar shards"):
        open_pool(pool_cfg(tmp_path, "nowhere", tmp_path))


def test_a_pool_folder_outside_the_root_names_absolute_paths(tmp_path):
    draw(tmp_path / "far" / "a.png", (3, 3, 3))
    cfg = pool_cfg(tmp_path / "data", str(tmp_path / "far"), tmp_path)
    (tmp_path / "data").mkdir()
    assert names(cfg) == [os.path.join(tmp_path, "far", "a.png")]
