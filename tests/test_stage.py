"""Stage cache: identical reruns recompute nothing, upstream changes invalidate, results are shared."""
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from conftest import compose_config

from mmgen.stage import fingerprint, is_fresh, run_stage


def _counting_compute(counter: Path, content: str):
    def compute(work_dir: Path) -> dict:
        with counter.open("a") as handle:
            handle.write("x")
        (work_dir / "result.txt").write_text(content)
        return {"items": len(content)}
    return compute


def _run(cfg, counter: Path, content: str = "abc") -> Path:
    return run_stage(cfg, "retrieve", ["result.txt"], _counting_compute(counter, content))


def test_identical_rerun_recomputes_nothing(tmp_path):
    cfg = compose_config(["+experiment=demo"], tmp_path / "exp")
    counter = tmp_path / "calls"
    out = _run(cfg, counter)
    _run(cfg, counter)
    assert counter.read_text() == "x"
    assert (out / "result.txt").read_text() == "abc"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["retrieve"]["items"] == 3 and stats["retrieve"]["wall_s"] >= 0


def test_changed_upstream_key_invalidates_downstream_only(tmp_path):
    cfg = compose_config(["+experiment=demo"], tmp_path / "exp")
    changed_downstream = compose_config(["+experiment=demo", "min_gen_per_candidate=4"],
                                        tmp_path / "exp")
    changed_upstream = compose_config(["+experiment=demo", "dataset.keywords=[map]"], tmp_path / "exp")
    assert fingerprint(cfg, "retrieve") == fingerprint(changed_downstream, "retrieve")
    assert fingerprint(cfg, "prompts") != fingerprint(changed_downstream, "prompts")
    assert fingerprint(cfg, "retrieve") != fingerprint(changed_upstream, "retrieve")
    assert fingerprint(cfg, "report") != fingerprint(changed_upstream, "report")
    counter = tmp_path / "calls"
    _run(cfg, counter)
    assert not is_fresh(changed_upstream, "retrieve", ["result.txt"])
    _run(changed_upstream, counter)
    assert counter.read_text() == "xx"


def test_runtime_keys_do_not_invalidate(tmp_path):
    cfg = compose_config(["+experiment=demo"], tmp_path / "exp")
    faster = compose_config(["+experiment=demo", "clip.batch_size=7"], tmp_path / "exp")
    assert fingerprint(cfg, "retrieve") == fingerprint(faster, "retrieve")


def test_experiments_with_same_upstream_share_the_result(tmp_path):
    counter = tmp_path / "calls"
    first = compose_config(["+experiment=demo"], tmp_path / "a")
    second = compose_config(["+experiment=demo", "min_gen_per_candidate=4"], tmp_path / "b")
    for cfg in (first, second):
        cfg.paths.cache_dir = str(tmp_path / "shared_cache")
        _run(cfg, counter)
    assert counter.read_text() == "x"
    assert (tmp_path / "b" / "result.txt").read_text() == "abc"


def _job(out_dir: str, cache_dir: str, counter: str) -> str:
    cfg = compose_config(["+experiment=demo"], Path(out_dir))
    cfg.paths.cache_dir = cache_dir
    return (_run(cfg, Path(counter), "x" * 100_000) / "result.txt").read_text()


def test_concurrent_jobs_compute_once_and_never_corrupt(tmp_path):
    jobs = [(str(tmp_path / f"job{i}"), str(tmp_path / "cache"), str(tmp_path / "calls"))
            for i in range(4)]
    with ProcessPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_job, *zip(*jobs)))
    assert results == ["x" * 100_000] * 4
    assert (tmp_path / "calls").read_text() == "x"


def test_input_content_changes_invalidate_the_stage_that_reads_them(tmp_path):
    root = tmp_path / "data"
    (root / "pool").mkdir(parents=True)
    (root / "reference.json").write_text('{"samples": []}')
    cfg = compose_config(["+experiment=demo", f"dataset.root={root}"], tmp_path / "exp")
    before = {stage: fingerprint(cfg, stage) for stage in ("partition", "retrieve")}
    (root / "pool" / "new.png").write_bytes(b"png bytes")
    assert fingerprint(cfg, "partition") == before["partition"]
    assert fingerprint(cfg, "retrieve") != before["retrieve"]
    (root / "reference.json").write_text('{"samples": [1]}')
    assert fingerprint(cfg, "partition") != before["partition"]
