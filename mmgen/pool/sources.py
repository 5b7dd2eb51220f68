"""Which kind of pool `dataset.pool` names, and what retrieve reports when none of it is usable.

- a folder (relative to dataset.root, or absolute): `pool`
- a text file listing image paths, or `URL<TAB>path` lines for downloaded URLs: `pool.txt`
- WebDataset tar shards with brace expansion: `shards/{00000..00099}.tar`
- a Hugging Face dataset's image column: `hf://PATH[:SPLIT[:COLUMN]]`
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig

from mmgen.errors import UserError
from mmgen.pool.folders import FolderPool, ListPool
from mmgen.pool.hashing import content_hash
from mmgen.pool.items import Listing, PoolSource

log = logging.getLogger(__name__)

LISTED_PROBLEMS = 100  # skipped entries named one by one in the log
POOL_KINDS = ("a folder, a text file listing image paths, tar shards like "
              "shards/{00000..00099}.tar, or hf://PATH[:SPLIT[:COLUMN]]")


def open_pool(cfg: DictConfig) -> PoolSource:
    """The pool `dataset.pool` names (relative paths are under dataset.root)."""
    from mmgen.pool import hf, shards

    spec, root, cache_dir = str(cfg.dataset.pool), Path(cfg.dataset.root), cfg.paths.cache_dir
    if spec.startswith(hf.PREFIX):
        return hf.DatasetPool(spec, root, cache_dir)
    if shards.looks_like_shards(spec):
        return shards.ShardPool(spec, root, cache_dir)
    path = root / spec
    if path.is_dir():
        return FolderPool(spec, root, cache_dir, path)
    if path.is_file():
        return ListPool(spec, root, cache_dir, path)
    raise UserError(f"dataset.pool '{path}' not found: set dataset.root and dataset.pool to "
                    f"{POOL_KINDS}")


def pool_listing(source: PoolSource, index: int = 0, count: int = 1) -> Listing:
    """The pool's listing (shard job `index` of `count`: its slice), problems logged once."""
    listing = source.listing() if count == 1 else source.split(index, count)
    if not listing.logged:
        for name, reason in listing.skipped[:LISTED_PROBLEMS]:
            log.warning("pool: skipping %s: %s", name, reason)
        if len(listing.skipped) > LISTED_PROBLEMS:
            log.warning("pool: ... and %d more entries skipped", len(listing.skipped) -
                        LISTED_PROBLEMS)
        if listing.ignored:
            log.info("pool %s: ignored %d files without an image extension", source.spec,
                     listing.ignored)
        listing.logged = True
    return listing


def retrieval_inputs_digest(cfg: DictConfig) -> str:
    """Digest of what retrieve reads beyond the config: the pool's listing and the eval file."""
    root = Path(cfg.dataset.root)
    parts = [open_pool(cfg).signature()]
    if cfg.dataset.eval and (root / cfg.dataset.eval).is_file():
        parts.append(content_hash(root / cfg.dataset.eval))
    return "-".join(parts)


def _kinds(reasons: list[str]) -> str:
    """'3 dangling symlink, 1 symlink loop': reasons counted by their first words."""
    counted = Counter(reason.split(" (")[0].split(":")[0] for reason in reasons)
    return ", ".join(f"{count} {kind}" for kind, count in counted.most_common())


def unusable_pool_error(source: PoolSource, listing: Listing, unreadable: list[tuple[str, str]],
                        excluded: dict[str, int]) -> UserError:
    """The error for a pool with no image that may become a candidate: what was found and why
    each was left out."""
    lines = [(f"the pool ({source.description} under dataset.root '{source.root}') has no "
              f"usable image: {len(listing.items)} images listed")]
    if listing.skipped:
        lines.append(f"{len(listing.skipped)} entries skipped while listing "
                     f"({_kinds([reason for _, reason in listing.skipped])}), "
                     f"e.g. {listing.skipped[0][0]}")
    if unreadable:
        lines.append(f"{len(unreadable)} images unreadable "
                     f"({_kinds([reason for _, reason in unreadable])}), e.g. {unreadable[0][0]}")
    if listing.ignored:
        lines.append(f"{listing.ignored} files without an image extension ignored")
    lines += [f"{count} {reason}" for reason, count in excluded.items() if count]
    return UserError("; ".join(lines) + f". Fix dataset.pool: {POOL_KINDS}, holding images "
                     "that are neither reference nor eval images")
