"""Benchmark: 150K prompts, wall time and peak RSS, against an in-memory baseline.

    .venv/bin/python benchmarks/bench_prompts.py [--total-gen 150000] [--icl 3]

Each variant runs in its own subprocess so its peak RSS (getrusage ru_maxrss) is its own:
  - stream:   mmgen.prompts.run (records streamed to prompts.jsonl), the shipped code path
  - baseline: the same records built into one list and dumped as one JSON file (the seed's way)
Both read a generated task file with the paper's ChartQA split (1203/198/519 references).
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

REPO = Path(__file__).resolve().parents[1]
LIMIT_S, LIMIT_MB = 60.0, 1024.0  # the budget for 150K prompts


def make_task(path: Path, sizes=(1203, 198, 519), candidates: int = 30000) -> None:
    """A seed-format task file: one subgroup per size, `candidates` pool paths each."""
    samples, subgroups = [], []
    for keyword, size in zip(["bar chart", "pie chart", "line chart"], sizes):
        short = keyword.split()[0]
        indices = list(range(len(samples), len(samples) + size))
        samples += [{"image_1": f"{short}_{n:04d}.png", "conversations": [
            {"from": "human", "value": f"<image>\nWhat is the highest value shown in {short} {n}?"},
            {"from": "gpt", "value": f"{n}.5"}]} for n in range(size)]
        subgroups.append({"keyword": keyword, "reference_sample_idx": indices,
                          "candidate_image_paths": [f"pool/{short}_{n:06d}.png"
                                                    for n in range(candidates)],
                          "candidate_scores": [0.3] * candidates})
    path.write_text(json.dumps({"image_folder": "reference",
                                "dataset_description": "chart question answering",
                                "samples": samples, "subgroups": subgroups}))


def child(variant: str, task_path: str, out: str, total_gen: int, icl: int) -> None:
    """Run one variant in this process and print {wall_s, max_rss_mb, prompts} as JSON."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import compose_config

    from mmgen import prompts
    from mmgen.contracts import load_task

    cfg = compose_config([f"task_file={task_path}", "dataset=chartqa", f"icl='{icl}'",
                          f"total_gen={total_gen}", "check_images=false"], Path(out))
    started = time.perf_counter()
    if variant == "stream":
        with open(prompts.run(cfg) / "prompts.jsonl", "rb") as handle:
            count = sum(1 for _ in handle)
    else:
        task = load_task(task_path)
        allocation = prompts.allocate(task, cfg.total_gen, cfg.min_gen_per_candidate)
        records = list(prompts.build_records(cfg, task, allocation))
        Path(out).mkdir(parents=True, exist_ok=True)
        with open(Path(out) / "prompts.json", "w", encoding="utf-8") as handle:
            json.dump(records, handle, ensure_ascii=False)
        count = len(records)
    wall = time.perf_counter() - started
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"wall_s": wall, "max_rss_mb": max_rss_mb, "prompts": count}))


def measure(variant: str, task_path: Path, work: Path, total_gen: int, icl: int) -> dict:
    out = work / variant
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", variant, str(task_path), str(out),
                           "--total-gen", str(total_gen), "--icl", str(icl)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{variant} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-gen", type=int, default=150000)
    parser.add_argument("--icl", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "TASK", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(*args.child, total_gen=args.total_gen, icl=args.icl)
        return
    with tempfile.TemporaryDirectory(prefix="bench_prompts_") as tmp:
        work = Path(tmp)
        make_task(work / "task.json")
        stream = measure("stream", work / "task.json", work, args.total_gen, args.icl)
        baseline = measure("baseline", work / "task.json", work, args.total_gen, args.icl)
    print(f"{stream['prompts']} prompts, icl={args.icl}, total_gen={args.total_gen}")
    for name, result in (("stream (mmgen)", stream), ("baseline (in-memory)", baseline)):
        print(f"  {name:<22} stage {result['wall_s']:6.1f} s   process {result['process_s']:6.1f} s"
              f"   peak RSS {result['max_rss_mb']:7.0f} MB")
    print(f"  ratio stream/baseline: time {stream['wall_s'] / baseline['wall_s']:.2f}x, "
          f"peak RSS {stream['max_rss_mb'] / baseline['max_rss_mb']:.2f}x")
    ok = stream["process_s"] < LIMIT_S and stream["max_rss_mb"] < LIMIT_MB
    print(f"  budget (< {LIMIT_S:.0f} s, < {LIMIT_MB:.0f} MB): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
