"""Generation engine throughput, CPU per request and peak RSS, against a local stub server.

    python benchmarks/bench_generate.py                # 640 prompts at 0.3 s latency + 150K RSS run
    python benchmarks/bench_generate.py --rss-prompts 0  # skip the 150K run

1. Our engine (python -m mmgen.generate's code path, backend=compatible) at concurrency 64
   against a stub with fixed 0.3 s latency: requests/s against the ideal 64 / 0.3 = 213 req/s.
2. The seed's scheme on the same prompts: 12 workers, each sending one request at a time with a
   synchronous client and re-reading and base64-encoding its images for every request.
3. Client CPU time per request (our process only; the stub runs in its own process).
4. Peak RSS of a child process generating --rss-prompts prompts (150K) through a zero-latency
   stub, streaming prompts.jsonl, appending generations.jsonl and rebuilding data.json.
Prompts are demo-shaped: an instruction text, one in-context image and one candidate image from
a small demo domain (images repeat, so after the first pass they come from the encode cache).
"""
from __future__ import annotations

import argparse
import base64
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import mmgen.stage  # noqa: F401  (registers the config schema)
from mmgen.contracts import iter_prompts, read_json

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def config(out: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(out)
        HydraConfig().set_config(cfg)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.out_dir, cfg.paths.cache_dir = str(out), str(out / ".cache")
    return cfg


def start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "mmgen.vlm.stub", "--latency", str(latency)],
                               stdout=subprocess.PIPE, text=True)
    return process, f"http://127.0.0.1:{int(process.stdout.readline())}/v1"


def overrides_for(root: Path, base_url: str, concurrency: int) -> list[str]:
    return [f"dataset.root={root}", "backend=compatible", f"backend.base_url={base_url}",
            "backend.model=gpt-4o", f"generate.concurrency={concurrency}",
            "generate.progress=false"]


def run_ours(root: Path, work: Path, count: int, base_url: str, concurrency: int) -> dict:
    from mmgen import generate
    from mmgen.vlm.testing import demo_prompt_records, write_prompts_fixture

    out = work / f"ours-{count}"
    cfg = config(out, *overrides_for(root, base_url, concurrency))
    write_prompts_fixture(cfg, demo_prompt_records(root, count))
    cpu = time.process_time()
    generate.run(cfg)
    cpu = time.process_time() - cpu
    stats = read_json(out / "stats.json")["generate"]
    assert stats["ok"] == count, stats
    return {"req_per_s": stats["run"]["calls_per_s"], "engine_s": stats["run"]["seconds"],
            "stage_wall_s": stats["wall_s"], "cpu_ms_per_request": 1000 * cpu / count}


def run_seed_scheme(root: Path, prompts_path: Path, base_url: str, workers: int) -> dict:
    """12 workers, one request at a time each, images read and encoded for every request."""
    import openai

    prompts = list(iter_prompts(prompts_path))
    lock, position, done = threading.Lock(), [0], [0]

    def worker() -> None:
        client = openai.OpenAI(api_key="stub", base_url=base_url, max_retries=0)
        while True:
            with lock:
                if position[0] >= len(prompts):
                    return
                prompt = prompts[position[0]]
                position[0] += 1
            parts = []
            for part in prompt["content"]:
                if part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
                else:
                    data = base64.b64encode((root / part["path"]).read_bytes()).decode()
                    parts.append({"type": "image_url",
                                  "image_url": {"url": f"data:image/png;base64,{data}"}})
            reply = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "system", "content": prompt["system"]},
                                          {"role": "user", "content": parts}], timeout=60)
            json.loads(reply.choices[0].message.content)
            with lock:
                done[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {"req_per_s": done[0] / seconds, "seconds": seconds}


def rss_child(root: str, work: str, count: int, base_url: str, concurrency: int) -> None:
    """Child process: generate `count` prompts, print peak RSS and timing as JSON."""
    result = run_ours(Path(root), Path(work), count, base_url, concurrency)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="generation engine benchmark")
    parser.add_argument("--prompts", type=int, default=640)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed-workers", type=int, default=12)
    parser.add_argument("--rss-prompts", type=int, default=150_000)
    parser.add_argument("--child", nargs=4, metavar=("ROOT", "WORK", "COUNT", "URL"))
    args = parser.parse_args()
    if args.child:
        root, work, count, url = args.child
        return rss_child(root, work, int(count), url, args.concurrency)

    from mmgen.vlm.testing import build_small_demo

    work = Path(tempfile.mkdtemp(prefix="mmgen-bench-"))
    root = build_small_demo(work / "demo")
    stub, base_url = start_stub(args.latency)
    try:
        ours = run_ours(root, work, args.prompts, base_url, args.concurrency)
        seed = run_seed_scheme(root, work / f"ours-{args.prompts}/prompts.jsonl", base_url,
                               args.seed_workers)
    finally:
        stub.kill()
    limit = args.concurrency / args.latency
    print(f"prompts {args.prompts}, latency {args.latency} s, concurrency {args.concurrency}")
    print(f"ours:        {ours['req_per_s']:.1f} req/s (engine {ours['engine_s']:.2f} s, stage "
          f"{ours['stage_wall_s']:.2f} s); ratio to the {limit:.0f} req/s limit: "
          f"{ours['req_per_s'] / limit:.3f}")
    print(f"seed scheme: {seed['req_per_s']:.1f} req/s ({args.seed_workers} workers, "
          f"{seed['seconds']:.2f} s); ours / seed = {ours['req_per_s'] / seed['req_per_s']:.2f}x")
    print(f"client CPU:  {ours['cpu_ms_per_request']:.2f} ms per request (whole stage, our process)")
    if args.rss_prompts:
        stub, base_url = start_stub(0.0)
        try:
            child = subprocess.run([sys.executable, __file__, "--concurrency",
                                    str(args.concurrency), "--child", str(root), str(work),
                                    str(args.rss_prompts), base_url],
                                   capture_output=True, text=True, check=True)
        finally:
            stub.kill()
        rss = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{args.rss_prompts} prompts, zero-latency stub: peak RSS {rss['peak_rss_mb']:.0f} MB, "
              f"{rss['req_per_s']:.0f} req/s, stage {rss['stage_wall_s']:.0f} s, "
              f"{rss['cpu_ms_per_request']:.2f} ms CPU per request")
    print(f"work dir: {work}")


if __name__ == "__main__":
    main()
