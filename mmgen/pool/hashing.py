"""Content hashes of images, the key of the embedding cache and of the leakage guard.

A file's hash is remembered in `<cache_dir>/file_hashes.jsonl` under its path, size and mtime,
so unchanged files are never read twice; bytes from tar shards or datasets hash the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from filelock import FileLock
from tqdm import tqdm

from mmgen.contracts import file_sha256, read_log, repair_log

HASH_CHARS = 32  # 128 bits of sha256 in hex: collisions are out of reach for any pool


def content_hash(path: Path) -> str:
    """The hex content hash the cache uses for a file (first 128 bits of sha256)."""
    return file_sha256(path)[:HASH_CHARS]


def bytes_hash(data: bytes) -> str:
    """The same hash for an image already in memory (a tar member, a dataset row)."""
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


class FileHasher:
    """Content hashes with a memo keyed by (path, size, mtime): unchanged files are not reread."""

    def __init__(self, cache_dir: Path, workers: int = 4):
        self.memo_path = Path(cache_dir) / "file_hashes.jsonl"
        self.workers = max(1, workers)
        self._memo: dict[str, tuple[int, int, str]] | None = None

    def _load(self) -> dict[str, tuple[int, int, str]]:
        if self._memo is None:
            self._memo = {r["p"]: (r["s"], r["m"], r["h"]) for r in read_log(self.memo_path)}
        return self._memo

    def hash(self, paths: Sequence[Path]) -> list[str]:
        """Content hash of each path (files must exist)."""
        keys = [str(Path(path).resolve()) for path in paths]
        stats = [os.stat(key) for key in keys]
        return self.hash_listed(keys, [(stat.st_size, stat.st_mtime_ns) for stat in stats])

    def hash_listed(self, keys: Sequence[str], stats: Sequence[tuple[int, int]]) -> list[str]:
        """Content hash of files whose (size, mtime_ns) a listing already read."""
        memo = self._load()
        todo = [i for i, (key, stat) in enumerate(zip(keys, stats))
                if memo.get(key, (None, None))[:2] != tuple(stat)]
        if todo:
            with ThreadPoolExecutor(self.workers) as pool:  # hashlib releases the GIL on big reads
                hashes = list(tqdm(pool.map(content_hash, [Path(keys[i]) for i in todo]),
                                   total=len(todo), desc="hashing", unit="file",
                                   disable=len(todo) < 1000))
            self.memo_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.memo_path) + ".lock"):
                repair_log(self.memo_path)
                with self.memo_path.open("a", encoding="utf-8") as handle:
                    for i, file_hash in zip(todo, hashes):
                        entry = (stats[i][0], stats[i][1], file_hash)
                        memo[keys[i]] = entry
                        handle.write(json.dumps({"p": keys[i], "s": entry[0], "m": entry[1],
                                                 "h": file_hash}) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
        return [memo[key][2] for key in keys]
