"""Pools in a Hugging Face dataset's image column: `dataset.pool=hf://PATH[:SPLIT[:COLUMN]]`.

PATH is a hub id (from the local Hugging Face cache when offline) or a folder of parquet / arrow
/ image files, relative to dataset.root or absolute; it goes to `datasets.load_dataset` as is.
SPLIT defaults to `train` and COLUMN to `image`; the column holds images (`datasets.Image`) or
raw bytes. Content hashes of the rows are computed once per dataset version and kept in
`<cache_dir>/pool_index/`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from mmgen.errors import UserError
from mmgen.pool.hashing import bytes_hash
from mmgen.pool.hf_rows import cell_bytes, load
from mmgen.pool.items import Listing, PoolSource, RowItem
from mmgen.pool.store import write_npy

log = logging.getLogger(__name__)

PREFIX = "hf://"
HASH_BATCH = 512  # rows read per step while hashing


def parse(spec: str, root: Path) -> tuple[str, str, str]:
    """(path or hub id, split, column) from `hf://PATH[:SPLIT[:COLUMN]]`."""
    path, split, column = (spec[len(PREFIX):].split(":") + ["train", "image"])[:3]
    if not path or spec.count(":") > 3:
        raise UserError(f"dataset.pool '{spec}' is not hf://PATH[:SPLIT[:COLUMN]] (PATH a hub "
                        "id or a local folder, without ':')")
    local = Path(root) / path
    return (str(local.resolve()) if local.exists() else path), split or "train", column or "image"


class DatasetPool(PoolSource):
    """The rows of one split of a Hugging Face dataset."""

    kind = "Hugging Face dataset"

    def __init__(self, spec: str, root: Path, cache_dir: Path):
        super().__init__(spec, root, cache_dir)
        self.dataset = parse(spec, root)

    def list_all(self) -> Listing:
        table = load(self.dataset)
        split = self.dataset[1]
        shown = self.spec[len(PREFIX):].split(":")[0]
        return Listing([RowItem(f"{shown}:{split}[{row}]", self.dataset, row)
                        for row in range(len(table))])

    def signature(self) -> str:
        """The datasets library's fingerprint of the loaded split (its files and transforms)."""
        table = load(self.dataset)
        return f"{table._fingerprint}-{len(table)}"

    def hashes(self, listing: Listing, hasher) -> list[str]:
        """Content hashes of every row, computed once per dataset version."""
        table = load(self.dataset)
        path = self.cache_dir / "pool_index" / f"hf-{table._fingerprint}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):  # sharded jobs wait for the first one's hashes
            if not path.is_file():
                write_npy(path, np.asarray(self._hash_rows(table), dtype="S32"))
            every = np.load(path)
        return [every[item.row].decode() for item in listing.items]

    def _hash_rows(self, table) -> list[str]:
        column, hashes = self.dataset[2], []
        for start in tqdm(range(0, len(table), HASH_BATCH), desc="hashing dataset rows",
                          unit="batch", disable=len(table) < 20 * HASH_BATCH):
            for offset, value in enumerate(table[start:start + HASH_BATCH][column]):
                try:
                    hashes.append(bytes_hash(cell_bytes(value, f"row {start + offset}")))
                except OSError:  # no bytes: hash the row's name, so it is skipped when read
                    hashes.append(bytes_hash(f"{self.spec}#{start + offset}".encode()))
        return hashes
