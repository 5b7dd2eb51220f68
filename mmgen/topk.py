"""Quotas and the streaming candidate search over embedding shards.

The pool is read shard by shard in windows of rows, so a pool of millions of images never sits in
memory: each window is scored against the subgroup queries, each image is given to the subgroup
where it scores highest, and a running top-k per subgroup keeps only the best `quota` so far.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

WINDOW_FLOATS = 1 << 24  # values read from a shard at a time (32 MB as float16)
BLOCK_ROWS = 512  # rows converted to float32 and scored at once: small enough to stay in cache

# (float32 pool rows [n, dim], their pool positions [n]) -> scores [n, subgroups]
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def subgroup_quotas(total_gen: int, sizes: Sequence[int], num_captions: int) -> list[int]:
    """ceil(total_gen * |ref_s| / |ref| / num_captions) per subgroup, in exact arithmetic."""
    total = sum(sizes)
    if total == 0 or num_captions < 1:
        raise ValueError(f"quotas need reference samples ({total}) and caps_per_image >= 1 "
                         f"(got {num_captions})")
    return [math.ceil(Fraction(total_gen * size, total * num_captions)) for size in sizes]


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(handle)
        if fortran_order:
            raise ValueError(f"{path}: embedding shard is Fortran-ordered; delete it to re-embed")
        return shape, dtype, handle.tell()


def iter_windows(layout: Sequence[tuple[Path, np.ndarray, np.ndarray]], width: int = 512
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (pool positions, rows as stored) window by window from each shard's chosen rows.

    Rows are read with plain file reads, not a memory map, so resident memory stays one window
    however large the pool is; `width` (the widest score block) sets the window size.
    """
    for path, rows, positions in layout:
        if not len(rows):
            continue
        shape, dtype, offset = _npy_header(path)
        dim = shape[1]
        window = max(1024, WINDOW_FLOATS // max(dim, width))
        row_bytes = dim * dtype.itemsize
        for window_start in range(0, shape[0], window):
            lo, hi = np.searchsorted(rows, [window_start, window_start + window])
            if lo == hi:
                continue
            first, last = int(rows[lo]), int(rows[hi - 1]) + 1
            block = np.fromfile(path, dtype=dtype, count=(last - first) * dim,
                                offset=offset + first * row_bytes).reshape(-1, dim)
            if hi - lo < last - first:  # only some rows of this window belong to the pool
                block = block[rows[lo:hi] - first]
            yield positions[lo:hi], block


class RunningTopK:
    """The k highest (score, id) pairs seen so far, updated a batch at a time."""

    def __init__(self, k: int):
        self.k = k
        self.scores = np.zeros(0, np.float32)
        self.ids = np.zeros(0, np.int64)

    def push(self, scores: np.ndarray, ids: np.ndarray) -> None:
        if self.k <= 0 or not len(scores):
            return
        scores = np.concatenate([self.scores, scores])
        ids = np.concatenate([self.ids, ids])
        if len(scores) > self.k:
            keep = np.argpartition(-scores, self.k - 1)[: self.k]
            scores, ids = scores[keep], ids[keep]
        self.scores, self.ids = scores, ids

    def floor(self) -> float:
        """The score a newcomer must beat to get in: -inf until k are held."""
        return float(self.scores.min()) if len(self.scores) >= self.k > 0 else -np.inf

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores), best first; ties go to the lower id so results are deterministic."""
        order = np.lexsort((self.ids, -self.scores))
        return self.ids[order], self.scores[order]


def blockwise_scores(score_fn: ScoreFn, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """score_fn over float32 copies of BLOCK_ROWS rows at a time (float16 shards convert in cache,
    about twice as fast as converting a whole window first)."""
    return np.concatenate([score_fn(rows[i:i + BLOCK_ROWS].astype(np.float32, copy=False),
                                    positions[i:i + BLOCK_ROWS])
                           for i in range(0, len(rows), BLOCK_ROWS)])


def near_duplicates(rows: np.ndarray, guard: np.ndarray, threshold: float) -> np.ndarray:
    """Which rows have a cosine above `threshold` to any guard row."""
    if not len(rows):
        return np.zeros(0, bool)
    columns = np.ascontiguousarray(guard.T)  # a transposed view multiplies ~20x slower
    return blockwise_scores(lambda block, _: (block @ columns).max(axis=1, keepdims=True),
                            rows, np.zeros(len(rows), np.int64))[:, 0] > threshold


def gather_rows(layout: Sequence[tuple[Path, np.ndarray, np.ndarray]],
                wanted: np.ndarray) -> np.ndarray:
    """float32 rows of the pool positions `wanted`, in that order (a few, read by memory map)."""
    order = np.argsort(wanted)
    ordered = wanted[order]
    gathered = None
    for path, rows, positions in layout:
        slot = np.minimum(np.searchsorted(ordered, positions), max(len(ordered) - 1, 0))
        hit = ordered[slot] == positions if len(ordered) else np.zeros(len(positions), bool)
        if not hit.any():
            continue
        shard = np.load(path, mmap_mode="r")
        if gathered is None:
            gathered = np.zeros((len(wanted), shard.shape[1]), np.float32)
        gathered[order[slot[hit]]] = shard[rows[hit]]
    return gathered if gathered is not None else np.zeros((len(wanted), 0), np.float32)


def _scan(layout, score_fn: ScoreFn, keep: Sequence[int], min_score: float, width: int,
          guard: np.ndarray | None, guard_threshold: float | None
          ) -> tuple[list[RunningTopK], dict]:
    """One pass over the pool: best subgroup per image, running top-`keep[s]` per subgroup.

    With a guard, every row that would enter a top-k is checked for near duplicates first.
    """
    tops = [RunningTopK(k) for k in keep]
    supply = np.zeros(len(keep), np.int64)
    near_count = below_min = 0
    for positions, rows in iter_windows(layout, width):
        scores = blockwise_scores(score_fn, rows, positions)
        best = scores.argmax(axis=1)
        best_score = scores[np.arange(len(rows)), best]
        eligible = best_score >= min_score
        below_min += int(len(rows) - eligible.sum())
        supply += np.bincount(best[eligible], minlength=len(keep))
        floors = np.array([top.floor() for top in tops], dtype=np.float32)
        contenders = np.flatnonzero(eligible & (best_score > floors[best]))
        if guard is not None and len(contenders):
            near = near_duplicates(rows[contenders], guard, guard_threshold)
            near_count += int(near.sum())
            supply -= np.bincount(best[contenders[near]], minlength=len(keep))
            contenders = contenders[~near]
        for subgroup, top in enumerate(tops):
            chosen = contenders[best[contenders] == subgroup]
            top.push(best_score[chosen], positions[chosen])
    return tops, {"near_duplicates": near_count, "below_min_score": below_min,
                  "supply": supply.tolist()}


def select_top_k(layout: Sequence[tuple[Path, np.ndarray, np.ndarray]], score_fn: ScoreFn,
                 quotas: Sequence[int], min_score: float, guard: np.ndarray | None = None,
                 guard_threshold: float | None = None, width: int = 512
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """Best `quotas[s]` pool positions per subgroup, each image in its best subgroup only.

    An image whose best score is below `min_score`, or whose cosine to a `guard` row exceeds
    `guard_threshold` (a near duplicate of a reference or eval image), is never taken. The guard
    is checked only on the winners plus a margin, after the pass, so its cost does not grow with
    the pool; if near duplicates eat the whole margin, a second pass checks every contender.
    Returns per subgroup (positions, scores), best first, and counts: near duplicates found,
    images below min_score, and each subgroup's supply (exact whenever a quota is not filled).
    """
    if guard is None or guard_threshold is None or not len(guard):
        tops, counts = _scan(layout, score_fn, quotas, min_score, width, None, None)
        return [top.result() for top in tops], counts
    margins = [quota // 8 + 16 for quota in quotas]
    tops, counts = _scan(layout, score_fn, [q + m for q, m in zip(quotas, margins)], min_score,
                         width, None, None)
    chosen = []
    for subgroup, (quota, top) in enumerate(zip(quotas, tops)):
        positions, scores = top.result()
        near = near_duplicates(gather_rows(layout, positions), guard, guard_threshold)
        if (~near).sum() < quota and len(positions) == top.k:  # unseen rows might qualify
            tops, counts = _scan(layout, score_fn, quotas, min_score, width, guard,
                                 guard_threshold)
            return [top.result() for top in tops], counts
        counts["near_duplicates"] += int(near.sum())
        counts["supply"][subgroup] -= int(near.sum())
        chosen.append((positions[~near][:quota], scores[~near][:quota]))
    return chosen, counts
