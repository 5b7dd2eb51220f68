"""Benchmark: demo training throughput (samples/s) on the CPU, by torch threads and batch size.

    .venv/bin/python benchmarks/bench_train.py [--samples 300] [--steps 40]

Trains the demo target model (mmgen.demo.trainer.DemoTrainer, the shipped code path) on the
demo's own training set (train.json of a small demo build) for a fixed number of steps, and
prints samples/s for each setting against the trainer's default (1 thread, batch 16). The
trainer pins torch to 1 thread while it trains; the 2-thread rows measure what that choice
costs or saves on this machine by patching the pin.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmgen.demo.build import build_demo
from mmgen.training import demo as demo_training

COUNTS = {"reference": {"bar": 1}, "eval": {}, "pool": {},
          "train": {"bar": 60, "line": 50, "pie": 40}}


def throughput(root: Path, samples: list[dict], steps: int, batch_size: int, threads: int,
               out: Path) -> float:
    """Samples per second over `steps` optimizer steps (image loading excluded)."""
    pin = torch.set_num_threads
    torch.set_num_threads = lambda n: pin(threads)  # the trainer pins 1; measure `threads`
    try:
        trainer = demo_training.DemoTrainer(epochs=1, max_steps=steps, batch_size=batch_size,
                                            lr=1e-3, save_every_steps=10**9,
                                            log_every_steps=10**9, progress=False, device="cpu")
        stats = trainer.train(samples, root, out, out / "log.jsonl")
    finally:
        torch.set_num_threads = pin
    return stats["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per setting")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "demo"
        started = time.perf_counter()
        build_demo(root, seed=0, counts=COUNTS, train_questions=2)
        samples = json.loads((root / "train.json").read_text())["samples"]
        print(f"demo training set: {len(samples)} samples "
              f"(built in {time.perf_counter() - started:.1f} s); {args.steps} steps per row")
        baseline = None
        print(f"{'threads':>7} {'batch':>5} {'samples/s':>10} {'vs default':>10}")
        for threads, batch_size in [(1, 16), (2, 16), (1, 32), (2, 32), (1, 64)]:
            rate = throughput(root, samples, args.steps, batch_size, threads,
                              Path(folder) / f"run_{threads}_{batch_size}")
            baseline = baseline or rate
            print(f"{threads:>7} {batch_size:>5} {rate:>10.1f} {rate / baseline:>10.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
