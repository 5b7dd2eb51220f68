"""The stage runner: each stage declared once, fresh results skipped, code and inputs in the
fingerprint, locks that keep concurrent jobs from computing twice, and a cache no edit corrupts."""
from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from conftest import compose_config

from mmgen import runner, stages
from mmgen.stages import STAGES, Stage

# Three toy stages a -> b -> c whose compute functions record each call in a counter file
# named by the config's `name`, so a test can count what ran.


def _count(cfg, stage: str) -> None:
    with open(Path(cfg.paths.out_dir).parent / f"{cfg.name}.calls", "a") as handle:
        handle.write(stage + "\n")


def compute_a(cfg, work_dir: Path) -> dict:
    _count(cfg, "a")
    (work_dir / "a.txt").write_text(f"a seed={cfg.seed}")
    return {"made": "a"}


def compute_b(cfg, work_dir: Path) -> dict:
    _count(cfg, "b")
    time.sleep(0.5)  # long enough for a second job to arrive while b is being made
    upstream = (Path(cfg.paths.out_dir) / "a.txt").read_text()
    (work_dir / "b.txt").write_text(upstream + f" b total_gen={cfg.total_gen}")
    return {"made": "b"}


def compute_c(cfg, work_dir: Path) -> dict:
    _count(cfg, "c")
    (work_dir / "c.txt").write_text((Path(cfg.paths.out_dir) / "b.txt").read_text() + " c")
    return {}


TOY = {
    "a": Stage("a", "test_runner:compute_a", ("a.txt",), keys=("seed",)),
    "b": Stage("b", "test_runner:compute_b", ("b.txt",), upstream=("a",), keys=("total_gen",),
               shared=False),
    "c": Stage("c", "test_runner:compute_c", ("c.txt",), upstream=("b",), keys=("name",)),
}


@pytest.fixture
def toy(monkeypatch):
    for name, stage in TOY.items():
        monkeypatch.setitem(STAGES, name, stage)
    return TOY


def _config(tmp_path: Path, *overrides: str, exp: str = "exp"):
    cfg = compose_config(["name=toy", "dataset.builder=null", *overrides], tmp_path / exp)
    cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "toy.calls"
    return path.read_text().split() if path.exists() else []


def test_running_the_last_stage_runs_each_upstream_once_then_nothing(tmp_path, toy):
    cfg = _config(tmp_path)
    out = runner.run(cfg, "c")
    assert _calls(tmp_path) == ["a", "b", "c"]
    assert (out / "c.txt").read_text() == "a seed=0 b total_gen=1000 c"
    runner.run(cfg, "c")
    assert _calls(tmp_path) == ["a", "b", "c"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["a"]["made"] == "a" and stats["b"]["wall_s"] >= 0.5


def test_a_changed_key_reruns_its_stage_and_downstream_only(tmp_path, toy):
    runner.run(_config(tmp_path), "c")
    runner.run(_config(tmp_path, "total_gen=7"), "c")
    assert _calls(tmp_path) == ["a", "b", "c", "b", "c"]


def test_a_changed_code_version_reruns_that_stage_and_downstream_not_upstream(
        tmp_path, toy, monkeypatch):
    cfg = _config(tmp_path)
    runner.run(cfg, "c")
    monkeypatch.setitem(STAGES, "b", dataclasses.replace(TOY["b"], version=2))
    runner.run(cfg, "c")
    assert _calls(tmp_path) == ["a", "b", "c", "b", "c"]


def test_real_stage_code_version_changes_downstream_fingerprints_only(tmp_path, monkeypatch):
    cfg = compose_config(["+experiment=demo"], tmp_path / "exp")
    before = {name: runner.fingerprint(cfg, name) for name in stages.plan(cfg, "report")}
    monkeypatch.setitem(STAGES, "prompts", dataclasses.replace(STAGES["prompts"], version=99))
    after = {name: runner.fingerprint(cfg, name) for name in before}
    changed = {name for name in before if before[name] != after[name]}
    downstream = {"prompts"}
    for name in before:  # plan order: upstream first
        if set(STAGES[name].upstream_of(cfg)) & downstream:
            downstream.add(name)
    assert changed == downstream
    assert {"generate", "filter", "train", "evaluate", "report"} <= changed
    assert not changed & {"partition", "retrieve", "baseline"}


def test_every_declared_stage_is_reachable_and_plans_upstream_first():
    cfg = compose_config(["+experiment=demo"], Path("/tmp/unused"))
    order = stages.plan(cfg, stages.LAST_STAGE)
    for name in order:
        for upstream in STAGES[name].upstream_of(cfg):
            assert order.index(upstream) < order.index(name)


def test_an_edited_output_is_made_again(tmp_path, toy):
    cfg = _config(tmp_path)
    out = runner.run(cfg, "c")
    (out / "b.txt").write_text("edited by hand")
    runner.run(cfg, "c")  # b is made again, as it was: c, made from that, stays
    assert _calls(tmp_path) == ["a", "b", "c", "b"]
    assert (out / "b.txt").read_text() == "a seed=0 b total_gen=1000"
    assert (out / "c.txt").read_text() == "a seed=0 b total_gen=1000 c"


def test_truncating_a_shared_output_in_one_run_leaves_another_run_unaffected(tmp_path, toy):
    first, second = _config(tmp_path, exp="one"), _config(tmp_path, exp="two")
    runner.run(first, "a")
    (Path(first.paths.out_dir) / "a.txt").write_text("")  # truncated through whatever link
    runner.run(second, "a")  # shares a's cache entry
    assert (Path(second.paths.out_dir) / "a.txt").read_text() == "a seed=0"
    assert _calls(tmp_path) == ["a"]  # the cache entry was a copy: nothing recomputed
    runner.run(first, "a")  # the edited run notices its output changed and restores it
    assert (Path(first.paths.out_dir) / "a.txt").read_text() == "a seed=0"


def test_a_corrupted_cache_entry_is_recomputed_not_reused(tmp_path, toy):
    first, second = _config(tmp_path, exp="one"), _config(tmp_path, exp="two")
    runner.run(first, "a")
    entry_file = next((tmp_path / "cache" / "a").glob("*/a.txt"))
    entry_file.chmod(0o644)
    entry_file.write_text("corrupt")
    runner.run(second, "a")
    assert (Path(second.paths.out_dir) / "a.txt").read_text() == "a seed=0"
    assert _calls(tmp_path) == ["a", "a"]


def _job(tmp: str, index: int) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    for name, stage in TOY.items():
        STAGES[name] = stage
    cfg = _config(Path(tmp), f"shard.index={index}", "shard.count=2")
    runner.run(cfg, "c")


def test_two_jobs_on_one_out_dir_never_compute_a_stage_twice(tmp_path):
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_job, [str(tmp_path)] * 2, [0, 1]))
    assert sorted(_calls(tmp_path)) == ["a", "b", "c"]


def test_temp_files_a_killed_run_left_are_removed(tmp_path, toy):
    cfg = _config(tmp_path)
    out = Path(cfg.paths.out_dir)
    out.mkdir(parents=True)
    (out / ".b.txt.tmp").write_text("half")
    runner.run(cfg, "c")
    assert not (out / ".b.txt.tmp").exists()


def test_an_unwritable_out_dir_fails_before_any_stage(tmp_path, toy):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = _config(tmp_path)
    cfg.paths.out_dir = str(blocker / "out")
    with pytest.raises(ValueError, match="paths.out_dir .* is not writable"):
        runner.run(cfg, "c")
    assert _calls(tmp_path) == []


def test_speed_only_keys_never_change_a_fingerprint(tmp_path):
    base = compose_config(["+experiment=demo"], tmp_path / "exp")
    faster = compose_config(["+experiment=demo", "clip.batch_size=7", "train.device=auto",
                             "train.trainer.num_workers=3", "evaluate.batch_size=5",
                             "generate.concurrency=3"], tmp_path / "exp")
    for name in ("partition", "generate", "train", "evaluate", "baseline"):
        assert runner.fingerprint(base, name) == runner.fingerprint(faster, name), name
    other = compose_config(["+experiment=demo", "train.lr=0.5"], tmp_path / "exp")
    assert runner.fingerprint(base, "train") != runner.fingerprint(other, "train")


def test_a_distributed_stage_runs_on_every_rank_and_rank_0_records_it(tmp_path, toy, monkeypatch):
    monkeypatch.setitem(STAGES, "b", dataclasses.replace(TOY["b"], distributed=True))
    cfg = _config(tmp_path)
    runner.run(cfg, "a")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    out = runner.run(cfg, "b")  # rank 1 computes b but records nothing: rank 0 does
    assert not (out / ".mmgen" / "b.json").exists()
    assert (out / ".mmgen" / "b.rank1.lock").exists()
    monkeypatch.setenv("RANK", "0")
    runner.run(cfg, "b")
    assert (out / ".mmgen" / "b.json").exists()
    assert _calls(tmp_path) == ["a", "b", "b"]
