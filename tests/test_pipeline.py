"""The whole method on the offline demo: one command, every file, a fast identical rerun, and a
joblib multirun whose jobs share upstream results without corrupting them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import compose_config

from mmgen import pipeline
from mmgen.contracts import load_dataset, read_generations

STAGE_FILES = ["task.json", "prompts.jsonl", "generations.jsonl", "data.json", "filtered.json",
               "report.html", "stats.json"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo):
    """Run the demo pipeline once from scratch (empty cache) and time it."""
    base = tmp_path_factory.mktemp("pipeline")
    cfg = compose_config(["+experiment=demo", f"paths.demo_dir={demo}"], base / "out")
    started = time.perf_counter()
    report_path = pipeline.run(cfg)
    return cfg, Path(cfg.paths.out_dir), report_path, time.perf_counter() - started


def test_demo_pipeline_writes_every_file_and_enough_samples(demo_run):
    _, out, report_path, _ = demo_run
    for name in STAGE_FILES:
        assert (out / name).stat().st_size > 0, name
    assert report_path == (out / "report.html").resolve()
    samples = load_dataset(out / "data.json")["samples"]
    kept = load_dataset(out / "filtered.json")["samples"]
    assert len(samples) >= 100
    assert 0.4 <= len(kept) / len(samples) <= 0.6  # keep_fraction 0.5, after cheap checks
    generations = read_generations(out / "generations.jsonl")
    assert all(record["status"] == "ok" for record in generations.values())
    stats = json.loads((out / "stats.json").read_text())
    for stage in pipeline_stages():
        assert stats[stage]["wall_s"] >= 0, stage


def pipeline_stages() -> list[str]:
    from mmgen import stages

    return stages.plan(compose_config(["+experiment=demo"]), stages.LAST_STAGE)


def test_identical_rerun_recomputes_nothing_and_is_fast(demo_run):
    cfg, out, _, first_seconds = demo_run
    before = {name: (out / name).stat().st_mtime_ns for name in STAGE_FILES}
    started = time.perf_counter()
    pipeline.run(cfg)
    rerun_seconds = time.perf_counter() - started
    assert {name: (out / name).stat().st_mtime_ns for name in STAGE_FILES} == before
    assert rerun_seconds < 0.25 * first_seconds, (rerun_seconds, first_seconds)


def test_joblib_multirun_jobs_share_upstream_and_keep_their_outputs(demo_run, tmp_path):
    cfg, *_ = demo_run
    sweep_dir = tmp_path / "sweep"
    cache_dir = tmp_path / "cache"
    done = subprocess.run(
        [sys.executable, "-m", "mmgen.generate", "-m", "+experiment=demo", "icl=1,3",
         "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"paths.demo_dir={cfg.paths.demo_dir}",
         f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep_dir}", "generate.progress=false"],
        cwd=tmp_path, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, capture_output=True, text=True,
        timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for examples in (1, 3):
        job_dir = sweep_dir / f"+experiment=demo,icl={examples}"
        samples = load_dataset(job_dir / "data.json")["samples"]
        ids = [sample["id"] for sample in samples]
        assert len(ids) >= 100 and len(ids) == len(set(ids))
        assert {len(sample["icl_indices"]) for sample in samples} == {examples}
        assert all(r["status"] == "ok" for r in read_generations(job_dir / "generations.jsonl").values())
    # the icl sweep partitions and retrieves once, and builds two prompt sets
    assert len(list((cache_dir / "partition").glob("*/.complete"))) == 1
    assert len(list((cache_dir / "retrieve").glob("*/.complete"))) == 1
    assert len(list((cache_dir / "prompts").glob("*/.complete"))) == 2


def test_a_dry_run_pipeline_stops_cleanly_after_writing_its_requests(tmp_path, demo_root):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "mmgen.pipeline", "+experiment=demo", "backend=dry_run",
         f"dataset.root={demo_root}", "dataset.builder=null", "total_gen=12",
         f"paths.out_dir={out}", f"paths.cache_dir={tmp_path / 'cache'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"the requests are in {out / 'requests.jsonl'}" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert (out / "requests.jsonl").stat().st_size > 0
    assert not (out / "data.json").exists() and not (out / "report.html").exists()


def test_a_cached_rerun_in_a_new_process_lists_the_pool_once(demo_run, monkeypatch):
    from mmgen.pool import folders, items

    cfg, out, *_ = demo_run
    listed = []
    original = folders.FolderPool.list_all
    monkeypatch.setattr(folders.FolderPool, "list_all",
                        lambda self: listed.append(self.spec) or original(self))
    monkeypatch.setattr(items, "_LISTINGS", {})  # as a new process starts
    before = (out / "report.html").stat().st_mtime_ns
    pipeline.run(cfg)
    assert listed == [cfg.dataset.pool]
    assert (out / "report.html").stat().st_mtime_ns == before
