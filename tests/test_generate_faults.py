"""Fault tolerance against the demo teacher's injected faults, and resume after kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

from mmgen import runner
from mmgen.contracts import load_dataset, read_json, read_log
from mmgen.testing.demo_prompts import demo_prompt_records, write_prompts_fixture

# 20% of requests faulty: 429 + Retry-After, 500, malformed reply, stall past the timeout, drop
FAULTS = ["backend.teacher.rate_429=0.05", "backend.teacher.rate_500=0.05",
          "backend.teacher.rate_malformed=0.04", "backend.teacher.rate_stall=0.03",
          "backend.teacher.rate_drop=0.03", "backend.teacher.retry_after_s=0.1",
          "backend.teacher.stall_s=3", "generate.timeout_s=1", "generate.max_attempts=6",
          "generate.backoff_base_s=0.02", "generate.progress=false"]


def test_twenty_percent_faults_end_in_one_record_per_prompt(make_config, demo_root):
    cfg = make_config(f"dataset.root={demo_root}", *FAULTS, "generate.concurrency=32")
    prompts = [p["id"] for p in demo_prompt_records(demo_root, 200)]
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 200))
    out = runner.run(cfg, "generate", alone=True)
    records = read_log(out / "generations.jsonl")
    assert Counter(r["id"] for r in records) == Counter(prompts)  # exactly one final record each
    ok = sum(r["status"] == "ok" for r in records)
    assert ok >= 0.95 * len(prompts)
    stats = read_json(out / "stats.json")["generate"]
    seen = stats["run"]["call_errors"]  # every injected fault happened and was survived
    assert {"rate_limit", "server", "timeout", "connection"} <= set(seen), seen
    assert stats["run"]["format_fixes"] > 0 and stats["ok"] == ok
    assert len(load_dataset(out / "data.json")["samples"]) == ok


def test_kill_9_halfway_then_rerun_has_no_duplicate_and_no_gap(make_config, demo_root, tmp_path):
    out = tmp_path / "run"
    overrides = [f"dataset.root={demo_root}", *FAULTS, "generate.concurrency=4",
                 "backend.teacher.latency_s=0.1"]
    cfg = make_config(*overrides, out_dir=out)
    prompts = [p["id"] for p in demo_prompt_records(demo_root, 120)]
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 120))
    command = [sys.executable, "-m", "mmgen.generate", *overrides, f"paths.out_dir={out}",
               f"paths.cache_dir={out}/.cache", "only=true"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    log_path = out / "generations.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if log_path.exists() and log_path.read_bytes().count(b"\n") >= 60:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = read_log(log_path)
    assert 60 <= len(before) < 120
    with log_path.open("a") as handle:  # a write cut short by the kill
        handle.write('{"id": "' + prompts[-1] + '", "status": "o')
    runner.run(cfg, "generate", alone=True)
    records = read_log(log_path)
    assert Counter(r["id"] for r in records) == Counter(prompts)
    assert records[:len(before)] == before  # finished work was kept, not redone
    samples = load_dataset(out / "data.json")["samples"]
    ok = {r["id"] for r in records if r["status"] == "ok"}
    assert {s["prompt_id"] for s in samples} == ok and len(samples) == len(ok)
    assert len(ok) >= 0.95 * len(prompts)
