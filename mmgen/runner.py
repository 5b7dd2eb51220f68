"""The one stage runner: brings a stage and everything it needs up to date, each at most once.

For every stage in the plan (upstream first) it computes a fingerprint (the config keys the stage
declares, the digests of its input files, its code, and its upstream stages' fingerprints),
skips the stage when out_dir holds outputs made under that fingerprint and untouched since, and
otherwise computes it under a lock: straight into out_dir, or into the shared cache
(paths.cache_dir/<stage>/<fingerprint>) from which every experiment with the same upstream
config takes a copy. Cached files are never edited in place: a reused entry whose files no longer
match their recorded digests is recomputed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from mmgen.contracts import read_json, write_json
from mmgen.errors import UserError
from mmgen.stage import MARKER_DIR, file_digest, out_dir, update_stats
from mmgen.stages import RUNTIME_KEYS, STAGES, Stage, call, plan

log = logging.getLogger(__name__)
TEMP_SUFFIXES = (".tmp", ".placing", ".partial-write")  # left behind by a killed write


def run(cfg: DictConfig, target: str, alone: bool = False) -> Path:
    """Bring `target` and every stage it needs up to date; returns out_dir.

    alone=True runs `target` only, taking its upstream results as they are in out_dir (tests,
    and upstream files made by hand)."""
    stages = [target] if alone or cfg.only else plan(cfg, target)
    check_config(cfg)
    ensure_dataset(cfg)
    preflight(cfg, stages)
    fingerprints: dict[str, str] = {}
    for name in stages:
        _run_stage(cfg, STAGES[name], fingerprints)
    return out_dir(cfg)


def ensure_dataset(cfg: DictConfig) -> None:
    """Build the dataset's inputs when its config names a builder (the offline demo does)."""
    builder = OmegaConf.select(cfg, "dataset.builder")
    if builder:
        call(builder, cfg.dataset.root)


def check_config(cfg: DictConfig) -> None:
    """The checks that need nothing but the config: folders writable, values in range."""
    from mmgen.schema import check_ranges

    check_ranges(cfg)
    _check_writable(Path(cfg.paths.out_dir), "paths.out_dir")
    _check_writable(Path(cfg.paths.cache_dir), "paths.cache_dir")


def preflight(cfg: DictConfig, stages: list[str]) -> None:
    """Every stage's own checks that need no upstream result, before any stage runs or anything
    is paid for (a bad filter or export setting fails before generation)."""
    for name in stages:
        for check in STAGES[name].validate:
            call(check, cfg)


def _check_writable(path: Path, key: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UserError(f"{key} '{path}' is not writable ({error.strerror}): choose another "
                        f"folder with {key}=...") from None


# --- fingerprints --------------------------------------------------------------------------

def _config_value(cfg: DictConfig, key: str):
    value = OmegaConf.select(cfg, key)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
        prefix = key + "."
        for runtime_key in RUNTIME_KEYS:
            if runtime_key.startswith(prefix):
                *parents, leaf = runtime_key[len(prefix):].split(".")
                node = value
                for part in parents:
                    node = node.get(part) if isinstance(node, dict) else None
                if isinstance(node, dict):
                    node.pop(leaf, None)
    return value


def code_digest(stage: Stage) -> str:
    """The stage's version and the source of the modules that compute it."""
    modules = (stage.compute.partition(":")[0],) + stage.code
    digest = hashlib.sha256(str(stage.version).encode())
    for module in modules:  # read, not imported: a cached rerun loads no model code
        digest.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(cfg: DictConfig, name: str, memo: dict[str, str] | None = None) -> str:
    """A short hash of everything that shapes stage `name`'s result, upstream included."""
    memo = {} if memo is None else memo
    if name not in memo:
        stage = STAGES[name]
        payload = {
            "stage": name,
            "code": code_digest(stage),
            "upstream": {up: fingerprint(cfg, up, memo) for up in stage.upstream_of(cfg)},
            "config": {key: _config_value(cfg, key) for key in stage.keys},
            "inputs": call(stage.inputs, cfg) if stage.inputs else {},
        }
        encoded = json.dumps(payload, sort_keys=True, default=str).encode()
        memo[name] = hashlib.sha256(encoded).hexdigest()[:16]
    return memo[name]


# --- freshness -----------------------------------------------------------------------------

def _marker(cfg: DictConfig, name: str) -> Path:
    return out_dir(cfg) / MARKER_DIR / f"{name}.json"


def _stat_manifest(root: Path, outputs: tuple[str, ...]) -> dict[str, list[int]] | None:
    """(size, mtime) of each output file; None when one is missing."""
    manifest = {}
    for name in outputs:
        path = root / name
        if not path.exists():
            return None
        stat = path.stat()
        manifest[name] = [stat.st_size, stat.st_mtime_ns] if path.is_file() else [0, 0]
    return manifest


def is_fresh(cfg: DictConfig, stage: Stage, print_: str) -> bool:
    """True when out_dir holds `stage`'s outputs made under `print_` and untouched since."""
    marker = _marker(cfg, stage.name)
    if not marker.is_file():
        return False
    try:
        recorded = read_json(marker)
    except (ValueError, OSError):
        return False
    if recorded.get("fingerprint") != print_:
        return False
    if recorded.get("outputs") != _stat_manifest(out_dir(cfg), stage.outputs_of(cfg)):
        log.warning("%s: an output in %s was changed since it was made; making it again",
                    stage.name, out_dir(cfg))
        return False
    return stage.complete is None or call(stage.complete, cfg)


def _mark_done(cfg: DictConfig, stage: Stage, print_: str) -> None:
    marker = _marker(cfg, stage.name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": print_,
                        "outputs": _stat_manifest(out_dir(cfg), stage.outputs_of(cfg))})


# --- running one stage ---------------------------------------------------------------------

@contextmanager
def stage_lock(cfg: DictConfig, name: str):
    """Hold out_dir's lock for `name`; a second run of the same experiment waits for it."""
    lock_dir = out_dir(cfg) / MARKER_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock, holder = FileLock(str(lock_dir / f"{name}.lock")), lock_dir / f"{name}.holder"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = holder.read_text().strip() if holder.is_file() else "another process"
        log.warning("%s: waiting for %s, held by %s", name, lock.lock_file, who)
        lock.acquire()
    try:
        holder.write_text(f"pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%H:%M:%S')}: {' '.join(sys.argv)}\n")
        yield
    finally:
        lock.release()


def _run_stage(cfg: DictConfig, stage: Stage, fingerprints: dict[str, str]) -> None:
    if stage.before:
        call(stage.before, cfg)  # may raise StageStop after a shard job's own slice
    print_ = fingerprint(cfg, stage.name, fingerprints)
    if is_fresh(cfg, stage, print_):
        log.info("%s: up to date in %s", stage.name, out_dir(cfg))
        return
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    ranks = stage.distributed and world > 1  # every rank joins in; each holds its own lock
    with stage_lock(cfg, f"{stage.name}.rank{rank}" if ranks else stage.name):
        if is_fresh(cfg, stage, print_):  # made by the run we waited for
            log.info("%s: made by another run in %s", stage.name, out_dir(cfg))
            return
        started = time.perf_counter()
        outputs = stage.outputs_of(cfg)
        _remove_temporaries(out_dir(cfg), outputs)
        if stage.shared:
            stats = _compute_shared(cfg, stage, print_, outputs)
        else:
            stats = call(stage.compute, cfg, out_dir(cfg))
        seconds = time.perf_counter() - started
        log.info("%s: done in %.1f s", stage.name, seconds)
        if rank == 0 or not ranks:  # one record of the result
            update_stats(cfg, stage.name, {**(stats or {}), "wall_s": round(seconds, 3)})
            _mark_done(cfg, stage, print_)


def _remove_temporaries(root: Path, outputs: tuple[str, ...]) -> None:
    """Delete temp files a killed write left beside this stage's outputs."""
    for folder in {(root / name).parent for name in outputs}:
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIXES):
                    log.info("removing %s, left by an interrupted run", path)
                    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _compute_shared(cfg: DictConfig, stage: Stage, print_: str, outputs: tuple[str, ...]):
    entry = Path(cfg.paths.cache_dir) / stage.name / print_
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        manifest = _valid_entry(entry, outputs)
        if manifest is None:
            work_dir = entry.with_name(entry.name + ".work")
            shutil.rmtree(work_dir, ignore_errors=True)
            work_dir.mkdir()
            stats = call(stage.compute, cfg, work_dir)
            write_json(work_dir / "stage_stats.json", stats or {})
            digests = {name: file_digest(work_dir / name) for name in outputs}
            for name in outputs:
                (work_dir / name).chmod(0o444)  # a cached result is never edited in place
            write_json(work_dir / ".complete", digests)
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(work_dir, entry)
        else:
            log.info("%s: reusing the shared result %s", stage.name, entry)
        for name in outputs:
            _place(entry / name, out_dir(cfg) / name)
        return read_json(entry / "stage_stats.json")


def _valid_entry(entry: Path, outputs: tuple[str, ...]) -> dict | None:
    """A complete cache entry's digests, or None (and the entry removed) when it was changed."""
    try:
        manifest = read_json(entry / ".complete")
    except (OSError, ValueError):  # missing, or written by an older mmgen
        return None
    changed = [name for name in outputs if not (entry / name).is_file()
               or file_digest(entry / name) != manifest.get(name)]
    if changed:
        log.warning("cache entry %s: %s changed since it was made; computing it again",
                    entry, ", ".join(changed))
        shutil.rmtree(entry, ignore_errors=True)
        return None
    return manifest


def _place(source: Path, target: Path) -> None:
    """Copy a cached file into out_dir atomically (a copy: edits in one run stay in that run)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.placing")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)
