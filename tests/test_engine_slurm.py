"""Sharded pool embedding on a real cluster engine: a one-node Slurm through
hydra-submitit-launcher. `.ci/engine_test.sh` starts Slurm and runs this file; elsewhere it is
skipped, naming what is missing."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmgen.contracts import load_task, read_json

ENGINE_VAR = "MMGEN_ENGINE_TEST"  # set by .ci/engine_test.sh: a missing engine fails there
STEP_TIMEOUT_S = 600  # without Slurm accounting a dead job would leave submitit waiting for ever
COUNTS = {"reference": {"bar": 4, "line": 3, "pie": 3}, "eval": {"bar": 1, "line": 1, "pie": 1},
          "pool": {"bar": 12, "line": 10, "pie": 10, "map": 2, "shapes": 2, "noise": 2,
                   "table": 2}}


def need_slurm() -> None:
    """Skip (fail under .ci/engine_test.sh) unless a Slurm node is up and the launcher installed."""
    problem = None
    if shutil.which("sinfo") is None:
        problem = "no Slurm client (sinfo) on PATH"
    else:
        try:
            states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                    timeout=60, check=False).stdout.split()
        except subprocess.TimeoutExpired:
            states = ["controller not answering"]
        if not {"idle", "mix", "alloc"} & set(states):
            problem = f"no Slurm node is up (sinfo states: {states or 'none'})"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        problem = "hydra-submitit-launcher is not installed (pip install -e '.[slurm]')"
    if problem is None:
        return
    how = "run `sudo bash .ci/engine_test.sh`, which starts a one-node Slurm and this test"
    if os.environ.get(ENGINE_VAR) == "1":
        pytest.fail(f"{problem}: {how}", pytrace=False)
    pytest.skip(f"{problem}: {how}")


def retrieve(*overrides: str, cwd: Path) -> None:
    command = [sys.executable, "-m", "mmgen.retrieve", *overrides]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}{done.stderr[-4000:]}"


def candidates(out: Path) -> list[list[str]]:
    return [group["candidate_image_paths"] for group in load_task(out / "task.json")["subgroups"]]


def test_two_slurm_shard_jobs_and_a_plain_merge_equal_the_unsharded_run(tmp_path):
    need_slurm()
    from mmgen.demo.build import build_demo

    root = tmp_path / "data"
    build_demo(root, seed=0, counts=COUNTS)
    common = ["+experiment=demo", f"dataset.root={root}", "caps_per_image='1'",
              "clip.num_workers=0"]
    shared = f"paths.cache_dir={tmp_path / 'shared_cache'}"
    retrieve("-m", *common, shared, "shard.count=2", "shard.index=0,1",
             "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
             "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
             "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={tmp_path / 'sweep'}",
             cwd=tmp_path)
    job_logs = sorted((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))
    assert len(job_logs) == 2  # two Slurm array tasks ran the shards
    sections = {}  # both jobs share one sweep folder (shard.* is left out of its name)
    for path in (tmp_path / "sweep").rglob("stats.json"):
        sections.update(read_json(path))
    embedded = [sections[f"retrieve_shard_{index}_of_2"]["embedded"] for index in (0, 1)]
    pool_size = sum(COUNTS["pool"].values())
    assert sum(embedded) == pool_size and min(embedded) > 0

    retrieve(*common, shared, f"paths.out_dir={tmp_path / 'merged'}", cwd=tmp_path)
    merged = read_json(tmp_path / "merged" / "stats.json")["retrieve"]
    assert merged["embedding"] == {"embedded": 0, "cached": pool_size}  # the jobs did it all

    retrieve(*common, f"paths.cache_dir={tmp_path / 'own_cache'}",
             f"paths.out_dir={tmp_path / 'single'}", cwd=tmp_path)
    assert candidates(tmp_path / "merged") == candidates(tmp_path / "single")
    assert sum(map(len, candidates(tmp_path / "single"))) > 0
