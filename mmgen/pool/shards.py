"""Pools of WebDataset tar shards, as img2dataset writes them (`key.jpg` + `key.json` + ...).

`dataset.pool` names the shards with brace expansion, `shards/{00000..00099}.tar`, relative to
dataset.root or absolute; several patterns join with `::` (webdataset's own syntax). Each shard
is read once, sequentially, into an index of its image members (offset, size, content hash)
kept in `<cache_dir>/pool_index/`, so later reads seek straight to a member. Sharded jobs split
the pool by whole tar files, so each job reads only its own shards.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
from pathlib import Path

from mmgen.contracts import read_json, write_json
from mmgen.errors import UserError
from mmgen.pool.hashing import bytes_hash
from mmgen.pool.items import IMAGE_EXTENSIONS, Listing, MemberItem, PoolSource

log = logging.getLogger(__name__)

INDEX_VERSION = 1  # bump when the index layout changes
WDS_META = re.compile(r"__[^/]*__($|/)")  # webdataset's own metadata members (__key__...)
SHARD_SUFFIX = re.compile(r"\.tar$|\.tar\.\w+$|\.tgz$")


def looks_like_shards(spec: str) -> bool:
    """Whether dataset.pool names tar shards rather than a folder or a list file."""
    return any(SHARD_SUFFIX.search(part.strip()) for part in spec.split("::"))


def expand(spec: str, root: Path) -> list[str]:
    """Absolute shard paths from a brace pattern (webdataset's expansion), in order."""
    from webdataset.shardlists import expand_urls

    return [os.path.abspath(Path(root) / url) for url in expand_urls(spec)]


def index_shard(path: str) -> dict:
    """One pass over a tar: its image members (name, key, offset, size, hash) and problems."""
    from webdataset.tariterators import base_plus_ext

    members, skipped, error, seen = [], [], None, 0
    try:
        with tarfile.open(path, "r:") as archive:  # plain tar only: seeking needs offsets
            for info in archive:
                seen += 1
                if not info.isreg() or WDS_META.match(info.name):
                    continue
                if Path(info.name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                key, _ = base_plus_ext(info.name)
                try:
                    data = archive.extractfile(info).read()
                except (tarfile.TarError, OSError) as err:
                    skipped.append([info.name, f"truncated member: {err}"])
                    continue
                members.append([info.name, key or info.name, info.offset_data, info.size,
                                bytes_hash(data)])
    except (tarfile.TarError, OSError, EOFError) as err:
        error = (f"cut short after {seen} members ({type(err).__name__}: {err})" if seen else
                 f"not a readable uncompressed tar ({type(err).__name__}: {err}); img2dataset "
                 "and webdataset write plain .tar files")
    return {"members": members, "skipped": skipped, "error": error}


class ShardPool(PoolSource):
    """Image members of WebDataset tar shards."""

    kind = "tar shards"

    def __init__(self, spec: str, root: Path, cache_dir: Path):
        super().__init__(spec, root, cache_dir)
        self.shards = expand(spec, root)

    def _shown(self, shard: str) -> str:
        relative = os.path.relpath(shard, os.path.abspath(self.root))
        return shard if relative.startswith("..") else Path(relative).as_posix()

    def _index(self, shard: str, info: os.stat_result) -> dict:
        """The shard's index, from the cache while the tar's size and mtime are unchanged."""
        key = hashlib.sha256(shard.encode()).hexdigest()[:20]
        path = self.cache_dir / "pool_index" / f"tar-{key}.json"
        stamp = [INDEX_VERSION, info.st_size, info.st_mtime_ns]
        if path.is_file():
            cached = read_json(path)
            if cached.get("stamp") == stamp:
                return cached
        index = {"shard": shard, "stamp": stamp, **index_shard(shard)}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, index)
        return index

    def _list(self, shards: list[str]) -> Listing:
        listing = Listing(hashes=[])
        for shard in shards:
            shown = self._shown(shard)
            try:
                info = os.stat(shard)
            except OSError as err:
                listing.skipped.append((shown, f"shard not readable: {err.strerror}"))
                continue
            listing.stamps.append((shard, info.st_size, info.st_mtime_ns))
            index = self._index(shard, info)
            if index["error"]:
                listing.skipped.append((shown, index["error"]))
            for member, reason in index["skipped"]:
                listing.skipped.append((f"{shown}#{member}", reason))
            for member, key, offset, size, content in index["members"]:
                listing.items.append(MemberItem(f"{shown}#{member}", shard, member, key, offset,
                                                size))
                listing.hashes.append(content)
        return listing

    def list_all(self) -> Listing:
        if not self.shards:
            raise UserError(f"dataset.pool '{self.spec}' expands to no shard names")
        return self._list(self.shards)

    def split(self, index: int, count: int) -> Listing:
        """Shard job `index` of `count` takes every count-th tar file, whole."""
        mine = self.shards[index::count]
        if not mine:
            log.warning("pool: shard job %d of %d has no tar file (the pool has %d); nothing to "
                        "embed", index + 1, count, len(self.shards))
        return self._list(mine)

    def signature(self) -> str:
        """Shard names, sizes and mtimes: no tar is opened."""
        digest = hashlib.sha256(self.description.encode())
        for shard in self.shards:
            try:
                info = os.stat(shard)
                digest.update(f"{shard}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{shard}\0missing\n".encode())
        return digest.hexdigest()[:16]
