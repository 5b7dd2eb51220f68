"""Evaluation throughput of the demo and compatible backends, in answered questions per second.

    python benchmarks/bench_evaluate.py                   # the demo eval set, base model
    python benchmarks/bench_evaluate.py --latency 0.2     # server latency for the concurrency run

1. demo backend (python -m mmgen.evaluate's code path, evaluate=demo) at batch 1 and batch 64:
   the batched run against one question at a time.
2. compatible backend against the demo model behind an OpenAI-compatible server in its own
   process (mmgen.demo.answer_server, standing in for vLLM):
   - with no added latency, at concurrency 1 and 16: the client's and server's own cost;
   - with --latency seconds per reply, at concurrency 1 and 16: how far concurrency hides the
     server's latency, against the ideal concurrency / latency questions/s.
   Each compatible run must give exactly the demo backend's answers.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from mmgen import evaluate
from mmgen.contracts import iter_jsonl
from mmgen.testing.config import compose_config


def config(out: Path, *overrides: str):
    """The composed config for a run writing into `out`."""
    return compose_config(list(overrides), out)


def run(out: Path, overrides: list[str]) -> tuple[dict, dict[str, str]]:
    """Evaluate the base model; (stats, answers by id)."""
    stats = evaluate.compute(config(out, "evaluate.model=base", "evaluate.progress=false",
                                    *overrides), out)
    answers = {r["id"]: r["prediction"] for r in iter_jsonl(out / "eval" / "predictions.jsonl")}
    return stats, answers


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    """The demo model behind an OpenAI-compatible server in its own process; (process, url)."""
    process = subprocess.Popen([sys.executable, "-m", "mmgen.demo.answer_server",
                                "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per reply")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="demo data folder (default: built in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        data_dir = args.data_dir or work / "demo_data"
        from mmgen.demo import ensure_demo_data

        ensure_demo_data(data_dir)
        common = [f"paths.demo_dir={data_dir}"]
        rows = []
        single, expected = run(work / "demo-1", [*common, "evaluate.batch_size=1"])
        batched, answers = run(work / "demo-64", [*common, "evaluate.batch_size=64"])
        assert answers == expected, "batching changed the demo model's answers"
        count = single["count"]
        rows += [("demo, batch 1", single["answers_per_s"], ""),
                 ("demo, batch 64", batched["answers_per_s"],
                  f"{batched['answers_per_s'] / single['answers_per_s']:.1f}x batch 1")]
        for latency in (0.0, args.latency):
            process, base_url = start_server(latency)
            try:
                for concurrency in (1, 16):
                    stats, served = run(work / f"compatible-{latency}-{concurrency}", [
                        *common, "evaluate=compatible", "evaluate.prompt='{question}'",
                        "evaluate.max_new_tokens=32", f"evaluate.backend.base_url={base_url}",
                        "evaluate.backend.model=demo-target-model",
                        f"evaluate.backend.concurrency={concurrency}"])
                    assert served == expected, "the server's answers differ from the demo's"
                    ideal = concurrency / latency if latency else None
                    rows.append((f"compatible, latency {latency:g} s, concurrency {concurrency}",
                                 stats["answers_per_s"],
                                 f"{stats['answers_per_s'] / ideal:.2f} of ideal {ideal:.0f}/s"
                                 if ideal else "client + server cost"))
            finally:
                process.terminate()
                process.wait()
    print(f"\nevaluation throughput, {count} demo eval questions, base model (answers equal "
          "across all runs)\n")
    width = max(len(name) for name, _, _ in rows)
    for name, rate, note in rows:
        print(f"  {name:<{width}}  {rate:8.1f} questions/s  {note}")


if __name__ == "__main__":
    main()
