"""Benchmark: the streaming candidate search over 1M x 512 pool embeddings, float16 and float32.

Writes a synthetic pool cache (unit rows in 16384-row .npy shards, as the embedding store does),
then, each in a fresh process so peak RSS is the search's own, runs
  - the baseline: reading every shard once (the I/O floor), and
  - mmgen.topk.select_top_k for 3 subgroups with the leakage guard on (200 guard rows),
and prints wall time, peak RSS and the ratio to the baseline. Goal: < 5 s and < 2.5 GB.

    python benchmarks/bench_topk.py [--rows 1000000] [--dim 512] [--quota 50000]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARD_ROWS = 16384


def write_pool(directory: Path, rows: int, dim: int, dtype: str) -> list[Path]:
    """Random unit rows in .npy shards; returns the shard paths."""
    rng = np.random.default_rng(0)
    paths = []
    for start in range(0, rows, SHARD_ROWS):
        block = rng.standard_normal((min(SHARD_ROWS, rows - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        path = directory / f"shard{start // SHARD_ROWS:05d}.npy"
        np.save(path, block.astype(dtype))
        paths.append(path)
    return paths


def child(mode: str, directory: str, quota: int) -> None:
    """Run one measurement in this (fresh) process and print it as JSON."""
    from mmgen.topk import iter_windows, select_top_k

    paths = sorted(Path(directory).glob("shard*.npy"))
    layout, offset = [], 0
    for path in paths:
        count = np.load(path, mmap_mode="r").shape[0]
        layout.append((path, np.arange(count), np.arange(offset, offset + count)))
        offset += count
    dim = np.load(paths[0], mmap_mode="r").shape[1]
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((3, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    guard = rng.standard_normal((200, dim)).astype(np.float32)
    guard /= np.linalg.norm(guard, axis=1, keepdims=True)
    started = time.perf_counter()
    if mode == "read":
        total = sum(float(rows[:1, :1].astype(np.float32).sum())
                    for _, rows in iter_windows(layout, 3))
        result = {"checksum": total}
    else:
        columns = np.ascontiguousarray(queries.T)
        chosen, counts = select_top_k(layout, lambda rows, positions: rows @ columns,
                                      [quota] * 3, min_score=-1.0, guard=guard,
                                      guard_threshold=0.98)
        result = {"taken": [len(ids) for ids, _ in chosen], "supply": counts["supply"]}
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(json.dumps(result))


def measure(mode: str, directory: Path, quota: int) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", mode, str(directory),
                             str(quota)], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--quota", type=int, default=50_000, help="images per subgroup")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    print(f"top-k search: {args.rows:,} x {args.dim} pool, 3 subgroups, quota {args.quota:,} "
          "each, 200 guard rows")
    for dtype in ("float16", "float32"):
        with tempfile.TemporaryDirectory(prefix="bench_topk_") as directory:
            write_pool(Path(directory), args.rows, args.dim, dtype)
            measure("read", Path(directory), args.quota)  # warm the page cache
            baseline = measure("read", Path(directory), args.quota)
            search = measure("search", Path(directory), args.quota)
        print(f"{dtype}: read all shards {baseline['seconds']:.2f} s "
              f"(peak RSS {baseline['peak_rss_gb']:.2f} GB); search {search['seconds']:.2f} s "
              f"(peak RSS {search['peak_rss_gb']:.2f} GB), "
              f"{search['seconds'] / baseline['seconds']:.2f}x "
              f"the read; took {search['taken']} -> goal < 5 s and < 2.5 GB: "
              f"{'met' if search['seconds'] < 5 and search['peak_rss_gb'] < 2.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
