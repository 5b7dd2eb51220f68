"""The image-embedding cache: CLIP embeddings of pool images, keyed by content hash.

Embeddings are keyed by file content hash inside one folder per model + preprocessing
(`<cache_dir>/embeddings/<model key>/`), so a copy under another name, another experiment or a
later run with more images never embeds a file twice. Each run that embeds something writes new
write-once shards (`<name>.npy` float16 rows, `<name>.keys.npy` hashes, `<name>.failed.json`
unreadable files with reasons); the keys file is written last and marks a shard complete, so
concurrent shard jobs never collide and a killed run loses at most one shard.
"""
from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmgen.contracts import atomic_writer, read_json, write_json

log = logging.getLogger(__name__)

HASH_DTYPE = "S32"  # 128 bits of sha256 in hex: collisions are out of reach for any pool
SHARD_ROWS = 16384  # rows per shard written while embedding: bounds the work a kill can lose


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_writer(path, "wb") as handle:
        np.save(handle, array)


class EmbeddingStore:
    """Embeddings of one model, keyed by content hash, in write-once float16 .npy shards."""

    def __init__(self, cache_dir: Path, encoder):
        self.encoder = encoder
        self.directory = Path(cache_dir) / "embeddings" / encoder.key
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / "model.json").exists():
            write_json(self.directory / "model.json", encoder.identity)
        self.refresh()

    def refresh(self) -> None:
        """Re-read which hashes are embedded (shards written by other jobs included)."""
        self.shards = sorted(p.name[:-len(".keys.npy")] for p in self.directory.glob("*.keys.npy"))
        keys, shard_ids, rows = [np.zeros(0, HASH_DTYPE)], [np.zeros(0, np.int32)], [np.zeros(0)]
        self.failures: dict[str, str] = {}
        for shard_id, name in enumerate(self.shards):
            shard_keys = np.load(self.directory / f"{name}.keys.npy")
            keys.append(shard_keys)
            shard_ids.append(np.full(len(shard_keys), shard_id, np.int32))
            rows.append(np.arange(len(shard_keys)))
            failed_path = self.directory / f"{name}.failed.json"
            if failed_path.exists():
                self.failures.update(read_json(failed_path))
        keys = np.concatenate(keys)
        order = np.argsort(keys, kind="stable")
        self._keys, self._shard_ids = keys[order], np.concatenate(shard_ids)[order]
        self._rows = np.concatenate(rows).astype(np.int64)[order]

    def locate(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(shard id, row) per hash; shard id -1 where the hash is not embedded."""
        wanted = np.asarray(hashes, dtype=HASH_DTYPE)
        if not len(self._keys):
            return np.full(len(wanted), -1, np.int64), np.full(len(wanted), -1, np.int64)
        position = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
        found = self._keys[position] == wanted
        shard_ids = np.where(found, self._shard_ids[position], -1).astype(np.int64)
        return shard_ids, np.where(found, self._rows[position], -1).astype(np.int64)

    def shard_path(self, shard_id: int) -> Path:
        return self.directory / f"{self.shards[shard_id]}.npy"

    def add(self, paths: Sequence, hashes: Sequence[str], label: str = "embedding") -> dict:
        """Embed the images (paths, or pool items with read_bytes()) whose hash is neither
        embedded nor known unreadable; returns counts."""
        shard_ids, _ = self.locate(hashes)
        todo, seen = [], set()
        for i, file_hash in enumerate(hashes):
            if shard_ids[i] < 0 and file_hash not in self.failures and file_hash not in seen:
                seen.add(file_hash)
                todo.append(i)
        if todo:
            log.info("%s: %d new images to embed with %s (%d already cached)",
                     label, len(todo), self.encoder.key, len(hashes) - len(todo))
            self._embed([paths[i] for i in todo], [hashes[i] for i in todo], label)
            self.refresh()
        return {"embedded": len(todo), "cached": len(hashes) - len(todo)}

    def _embed(self, paths: list, hashes: list[str], label: str) -> None:
        rows, keys, failed = [], [], {}
        bar = tqdm(total=len(paths), desc=label, unit="img", disable=len(paths) < 256)

        def flush() -> None:
            if not rows and not failed:
                return
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            embeddings = np.concatenate(rows) if rows else np.zeros((0, 0))
            write_npy(self.directory / f"{name}.npy", embeddings.astype(np.float16))
            write_json(self.directory / f"{name}.failed.json", failed)
            write_npy(self.directory / f"{name}.keys.npy", np.asarray(keys, dtype=HASH_DTYPE))
            rows.clear(), keys.clear(), failed.clear()

        for indices, embeddings, unreadable in self.encoder.iter_image_embeddings(paths):
            if len(indices):
                rows.append(embeddings)
                keys.extend(hashes[i] for i in indices)
            for index, reason in unreadable:
                failed[hashes[index]] = reason
            bar.update(len(indices) + len(unreadable))
            bar.set_postfix(unreadable=len(self.failures) + len(failed))
            if len(keys) >= SHARD_ROWS:
                flush()
        flush()
        bar.close()

    def gather(self, hashes: Sequence[str]) -> np.ndarray:
        """float32 embeddings of a few hashes (reference or eval images); missing ones raise."""
        shard_ids, rows = self.locate(hashes)
        if (shard_ids < 0).any():
            missing = [h for h, s in zip(hashes, shard_ids) if s < 0]
            raise KeyError(f"{len(missing)} hashes are not embedded in {self.directory}")
        matrix = None
        for shard_id in np.unique(shard_ids):
            chosen = np.flatnonzero(shard_ids == shard_id)
            shard = np.load(self.shard_path(int(shard_id)), mmap_mode="r")
            if matrix is None:
                matrix = np.zeros((len(hashes), shard.shape[1]), np.float32)
            matrix[chosen] = shard[rows[chosen]]
        return matrix if matrix is not None else np.zeros((0, 0), np.float32)

    def layout(self, hashes: Sequence[str]) -> list[tuple[Path, np.ndarray, np.ndarray]]:
        """Per shard: (file, rows sorted, positions in `hashes`), for streaming over a pool."""
        shard_ids, rows = self.locate(hashes)
        layout = []
        for shard_id in np.unique(shard_ids[shard_ids >= 0]):
            positions = np.flatnonzero(shard_ids == shard_id)
            order = np.argsort(rows[positions])
            layout.append((self.shard_path(int(shard_id)), rows[positions][order],
                           positions[order]))
        return layout
