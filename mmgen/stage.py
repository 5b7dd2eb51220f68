"""What every stage app shares: fingerprints of the config that made a result, freshness
checks, a content-keyed cache shared across experiments, file locks and stats.json.

A stage's fingerprint hashes the config keys it reads plus its upstream stage's fingerprint, so
changing an upstream key invalidates everything downstream and nothing else.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from mmgen.contracts import file_sha256, read_json, write_json
from mmgen.schema import register

register()
# sweep folders are named by their overrides, minus quotes (icl='3') and slashes (task_file=a/b)
OmegaConf.register_new_resolver(
    "mmgen_dirname", lambda name: re.sub(r"['\"]", "", name).replace("/", "_"), replace=True)
log = logging.getLogger(__name__)
# config groups whose options are numbers (icl=3, caps_per_image=1,3,5)
NUMERIC_GROUPS = ("icl", "caps_per_image")

# stage -> (upstream stage, config keys whose values shape its result)
STAGE_INPUTS: dict[str, tuple[str | None, list[str]]] = {
    "partition": (None, ["dataset", "clip", "refset", "seed", "task_file"]),
    "retrieve": ("partition", ["retrieval", "caps_per_image", "total_gen"]),
    "prompts": ("retrieve", ["mode", "icl", "total_gen", "min_gen_per_candidate", "seed",
                             "dataset.description"]),
    # backend.name is left out: the same model through openai, openai_batch or a proxy gives the
    # same kind of result, so switching between them resumes the same log
    "generate": ("prompts", ["backend.model", "backend.deployment", "min_gen_per_candidate",
                             "generate"]),
    # filter.batch_size and filter.device only change speed, so they are left out
    "filter": ("generate", ["filter.scorer", "filter.checks", "filter.keep_fraction",
                            "filter.select", "seed"]),
    "export": ("filter", ["export"]),
    "report": ("export", ["report"]),
}
# keys that change how fast a result is made, never what it is
RUNTIME_KEYS = {"clip.device", "clip.batch_size", "clip.num_workers", "clip.fp16_on_cuda",
                "generate.concurrency", "generate.rpm", "generate.tpm", "generate.timeout_s",
                "generate.max_attempts", "generate.backoff_base_s", "generate.backoff_max_s",
                "generate.retry_failed", "generate.max_cost_usd", "generate.image_cache",
                "generate.encode_threads", "generate.progress", "generate.prices"}
MARKER_DIR = ".mmgen"



def _config_value(cfg: DictConfig, key: str):
    value = OmegaConf.select(cfg, key)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
        prefix = key + "."
        for runtime_key in RUNTIME_KEYS:
            if runtime_key.startswith(prefix):
                value.pop(runtime_key[len(prefix):], None)
    return value


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def _file_digest(path: Path) -> str:
    """sha256 of a file, read once per process while its size and mtime stay the same."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def input_digests(cfg: DictConfig, stage: str) -> dict[str, str]:
    """Digests of what a stage reads beyond the config: data files, checkpoints, the pool."""
    if stage == "partition":
        files = [Path(cfg.dataset.root) / cfg.dataset.reference]
        files += [Path(path) for path in (cfg.task_file, cfg.clip.pretrained) if path]
    elif stage == "retrieve":  # the pool's images and the eval set shape the candidates too
        from mmgen.pool import retrieval_inputs_digest

        return {"pool": retrieval_inputs_digest(cfg)}
    elif stage == "filter":  # generate is resumable, so data.json can grow under the same config
        files = [Path(cfg.paths.out_dir) / "data.json"]
    else:
        files = []
    return {str(path): _file_digest(path) for path in files if path.is_file()}


def fingerprint(cfg: DictConfig, stage: str) -> str:
    """A short hash of everything that shapes `stage`'s result, upstream included."""
    upstream, keys = STAGE_INPUTS[stage]
    payload = {
        "stage": stage,
        "upstream": fingerprint(cfg, upstream) if upstream else None,
        "config": {key: _config_value(cfg, key) for key in keys},
        "inputs": input_digests(cfg, stage),
    }
    encoded = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def out_dir(cfg: DictConfig) -> Path:
    """This experiment's output folder, created on first use."""
    path = Path(cfg.paths.out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _marker(cfg: DictConfig, stage: str) -> Path:
    return out_dir(cfg) / MARKER_DIR / f"{stage}.fingerprint"


def is_fresh(cfg: DictConfig, stage: str, outputs: list[str]) -> bool:
    """True when `outputs` exist in out_dir and were made from the current config."""
    marker = _marker(cfg, stage)
    if not marker.exists() or marker.read_text().strip() != fingerprint(cfg, stage):
        return False
    return all((out_dir(cfg) / name).exists() for name in outputs)


def mark_done(cfg: DictConfig, stage: str) -> None:
    """Record that out_dir holds `stage`'s result for the current config."""
    marker = _marker(cfg, stage)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint(cfg, stage) + "\n")


def _place(source: Path, target: Path) -> None:
    """Put a cached file into out_dir: hard link when possible, copy otherwise; atomically."""
    temporary = target.with_name(f".{target.name}.placing")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def run_stage(cfg: DictConfig, stage: str, outputs: list[str],
              compute: Callable[[Path], dict | None], shared: bool = True) -> Path:
    """Make `stage`'s outputs in out_dir unless they are fresh, and return out_dir.

    compute(work_dir) writes the outputs into work_dir and may return stats for stats.json.
    With shared=True the result is kept in the cache under its fingerprint, so any experiment
    with the same upstream config reuses it; a file lock keeps concurrent jobs from racing.
    With shared=False compute writes straight into out_dir (for resumable, per-run work).
    """
    target_dir = out_dir(cfg)
    if is_fresh(cfg, stage, outputs):
        log.info("%s: up to date in %s", stage, target_dir)
        return target_dir
    started = time.perf_counter()
    if not shared:
        stats = compute(target_dir)
    else:
        entry = Path(cfg.paths.cache_dir) / stage / fingerprint(cfg, stage)
        entry.parent.mkdir(parents=True, exist_ok=True)
        stats = None
        with FileLock(str(entry) + ".lock"):
            if not (entry / ".complete").exists():
                work_dir = entry.with_name(entry.name + ".work")
                shutil.rmtree(work_dir, ignore_errors=True)
                work_dir.mkdir()
                stats = compute(work_dir)
                write_json(work_dir / "stage_stats.json", stats or {})
                (work_dir / ".complete").touch()
                shutil.rmtree(entry, ignore_errors=True)
                os.replace(work_dir, entry)
            else:
                log.info("%s: reusing the shared result %s", stage, entry)
                stats = read_json(entry / "stage_stats.json")
            for name in outputs:
                _place(entry / name, target_dir / name)
    seconds = time.perf_counter() - started
    log.info("%s: done in %.1f s", stage, seconds)
    update_stats(cfg, stage, {**(stats or {}), "wall_s": round(seconds, 3)})
    mark_done(cfg, stage)
    return target_dir


def update_stats(cfg: DictConfig, section: str, values: dict) -> None:
    """Merge `values` into stats.json[section] under a lock, atomically."""
    stats_path = out_dir(cfg) / "stats.json"
    lock_path = out_dir(cfg) / MARKER_DIR / "stats.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with FileLock(str(lock_path)):
        stats = read_json(stats_path) if stats_path.exists() else {}
        stats[section] = values
        write_json(stats_path, stats)


def _quote_numeric_choice(arg: str) -> str:
    match = re.fullmatch(rf"([+~]*(?:{'|'.join(NUMERIC_GROUPS)}))=([0-9]+(?:,[0-9]+)*)", arg)
    if not match:
        return arg
    return match[1] + "=" + ",".join(f"'{choice}'" for choice in match[2].split(","))


def launch(hydra_entry: Callable[[], None]) -> None:
    """Run a stage's Hydra entry, letting numeric group choices (icl=3, icl=1,3,5) through.

    Hydra reads `icl=3` as the integer 3, which it refuses as a config group choice; quoting
    the choice makes it the option name the user meant.
    """
    sys.argv = [sys.argv[0]] + [_quote_numeric_choice(arg) for arg in sys.argv[1:]]
    hydra_entry()
