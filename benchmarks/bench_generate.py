"""Generation engine throughput, CPU per request and peak RSS, against a local stub server.

    python benchmarks/bench_generate.py                # 1280 prompts at 0.3 s latency + 150K RSS
    python benchmarks/bench_generate.py --rss-prompts 0  # skip the 150K run

1. Our engine (python -m mmgen.generate's code path, backend=compatible) at concurrency 64
   against a stub with fixed 0.3 s latency: requests/s against the ideal 64 / 0.3 = 213 req/s.
2. The seed's scheme on the same prompts: 12 workers, each sending one request at a time with a
   synchronous client and re-reading and base64-encoding its images for every request.
3. Client CPU time per request (our process only; the stub runs in its own process).
4. Peak RSS of a child process running the stage over --rss-prompts prompts (150K): all but
   2,000 already in generations.jsonl, 2,000 sent to a zero-latency stub, data.json rebuilt
   with every sample (the memory that grows with the prompt count: the log's index, the
   rebuilt dataset); and of a 150K dry run (streams prompts.jsonl into requests.jsonl).
Prompts are demo-shaped: an instruction text, one in-context image and one candidate image from
a small demo domain (images repeat, so after the first pass they come from the encode cache).
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mmgen.stage  # noqa: F401  (registers the config schema)
from mmgen.contracts import iter_prompts, read_json
from mmgen.testing.config import compose_config

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
SENT = 2000  # prompts the 150K RSS run actually sends (the rest are already in the log)


def config(out: Path, *overrides: str):
    """The composed config for a run writing into `out`."""
    return compose_config(list(overrides), out)


def start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "mmgen.testing.stub_server", "--latency", str(latency)],
                               stdout=subprocess.PIPE, text=True)
    return process, f"http://127.0.0.1:{int(process.stdout.readline())}/v1"


def overrides_for(root: Path, base_url: str, concurrency: int) -> list[str]:
    return [f"dataset.root={root}", "backend=compatible", f"backend.base_url={base_url}",
            "backend.model=gpt-4o", f"generate.concurrency={concurrency}",
            "generate.progress=false"]


def run_ours(root: Path, work: Path, count: int, base_url: str, concurrency: int) -> dict:
    from mmgen import generate
    from mmgen.testing.demo_prompts import demo_prompt_records, write_prompts_fixture

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


def run_bare_client(base_url: str, count: int, concurrency: int) -> dict:
    """Reference: the bare AsyncOpenAI client posting a tiny body at the same concurrency (no
    images, no parsing, no log): what this machine allows the HTTP stack right now."""
    import asyncio

    import httpx2

    from mmgen.vlm.client import make_clients

    backend = config(Path(tempfile.gettempdir()), "backend=compatible",
                     f"backend.base_url={base_url}", "backend.model=gpt-4o").backend
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Reply with only a JSON "
                                             'list of 1 objects with the keys "Q", "A".'}]}

    async def go() -> float:
        clients = make_clients(backend, base_url, concurrency)
        gate = asyncio.Semaphore(concurrency)

        async def one(number: int) -> None:
            async with gate:
                await clients[number % len(clients)].post(
                    "/chat/completions", cast_to=httpx2.Response, body=body)

        started = time.perf_counter()
        await asyncio.gather(*(one(number) for number in range(count)))
        seconds = time.perf_counter() - started
        for client in clients:
            await client.close()
        return seconds

    return {"req_per_s": count / asyncio.run(go())}


def rss_child(mode: str, root: Path, work: Path, count: int, base_url: str,
              concurrency: int) -> None:
    """Child process: one 150K-prompt stage run; prints its peak RSS and timing as JSON.

    mode "resume": prompts.jsonl has `count` prompts and generations.jsonl already holds the
    stub's answers for all but the last SENT of them (written beforehand, streaming); the stage
    then streams the prompts, sends SENT through the zero-latency stub and rebuilds data.json
    with `count` samples. mode "dry_run": backend=dry_run over the same `count` prompts.
    """
    from mmgen import generate
    from mmgen.contracts import AppendLog
    from mmgen.testing.demo_prompts import demo_prompt_records, write_prompts_fixture
    from mmgen.testing.stub_server import canned_answer
    from mmgen.vlm.resume import prepare_log

    out = work / f"{mode}-{count}"
    extra = ["backend=dry_run"] if mode == "dry_run" else []
    cfg = config(out, *overrides_for(root, base_url, concurrency), *extra)
    write_prompts_fixture(cfg, demo_prompt_records(root, count))
    if mode == "resume":
        prepare_log(cfg, out)  # records what the log is made from, so the stage resumes it
        with AppendLog(out / "generations.jsonl") as generations:
            chunk = []
            for prompt in itertools.islice(demo_prompt_records(root, count), count - SENT):
                reply = canned_answer({"messages": [{"content": prompt["content"]}]})
                chunk.append({"id": prompt["id"], "status": "ok", "reply": reply,
                              "items": json.loads(reply), "attempts": 1, "error_class": None,
                              "usage": {"prompt_tokens": 700, "completion_tokens": 12},
                              "error": None, "model": "gpt-4o"})
                if len(chunk) == 1000:
                    generations.append_many(chunk)
                    chunk = []
            generations.append_many(chunk)
    started, cpu = time.perf_counter(), time.process_time()
    generate.run(cfg)
    result = {"seconds": time.perf_counter() - started, "cpu_s": time.process_time() - cpu,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if mode == "resume":
        stats = read_json(out / "stats.json")["generate"]
        assert stats["ok"] == count and stats["samples"] == count, stats
        result["sent"] = stats["run"]["finished"]
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="generation engine benchmark")
    parser.add_argument("--prompts", type=int, default=1280)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed-workers", type=int, default=12)
    parser.add_argument("--rss-prompts", type=int, default=150_000)
    parser.add_argument("--child", nargs=5, metavar=("MODE", "ROOT", "WORK", "COUNT", "URL"))
    args = parser.parse_args()
    if args.child:
        mode, root, work, count, url = args.child
        return rss_child(mode, Path(root), Path(work), int(count), url, args.concurrency)

    from mmgen.testing.demo_prompts import build_small_demo

    work = Path(tempfile.mkdtemp(prefix="mmgen-bench-"))
    root = build_small_demo(work / "demo")
    stub, base_url = start_stub(args.latency)
    try:
        load = os.getloadavg()[0]
        bare = run_bare_client(base_url, args.prompts, args.concurrency)
        ours = run_ours(root, work, args.prompts, base_url, args.concurrency)
        seed = run_seed_scheme(root, work / f"ours-{args.prompts}/prompts.jsonl", base_url,
                               args.seed_workers)
    finally:
        stub.kill()
    limit = args.concurrency / args.latency
    print(f"prompts {args.prompts}, latency {args.latency} s, concurrency {args.concurrency}, "
          f"load average {load:.1f} at start on {os.cpu_count()} CPUs")
    print(f"ours:        {ours['req_per_s']:.1f} req/s (engine {ours['engine_s']:.2f} s, stage "
          f"{ours['stage_wall_s']:.2f} s); ratio to the {limit:.0f} req/s limit: "
          f"{ours['req_per_s'] / limit:.3f}")
    print(f"seed scheme: {seed['req_per_s']:.1f} req/s ({args.seed_workers} workers, "
          f"{seed['seconds']:.2f} s); ours / seed = {ours['req_per_s'] / seed['req_per_s']:.2f}x")
    print(f"bare client: {bare['req_per_s']:.1f} req/s (tiny body, nothing else); "
          f"ours / bare = {ours['req_per_s'] / bare['req_per_s']:.2f}")
    print(f"client CPU:  {ours['cpu_ms_per_request']:.2f} ms per request (whole stage, our process)")
    if args.rss_prompts:
        stub, base_url = start_stub(0.0)
        try:
            for mode in ("resume", "dry_run"):
                child = subprocess.run([sys.executable, __file__, "--concurrency",
                                        str(args.concurrency), "--child", mode, str(root),
                                        str(work), str(args.rss_prompts), base_url],
                                       capture_output=True, text=True, check=True)
                rss = json.loads(child.stdout.strip().splitlines()[-1])
                what = (f"stage resumed with {args.rss_prompts - SENT} in the log, {SENT} sent "
                        "to a zero-latency stub, data.json rebuilt" if mode == "resume"
                        else "dry run (requests.jsonl)")
                print(f"{args.rss_prompts} prompts, {what}: peak RSS {rss['peak_rss_mb']:.0f} MB,"
                      f" {rss['seconds']:.1f} s, {rss['cpu_s']:.1f} s CPU")
        finally:
            stub.kill()
    print(f"work dir: {work}")


if __name__ == "__main__":
    main()
