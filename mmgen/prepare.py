"""Prepare a benchmark's inputs at dataset.root from its Hugging Face dataset (dataset.source):

    reference.json  reference questions (LLaVA format)               <- source.reference
    eval.json       held-out questions, with `split` and `options`   <- source.eval
    train.json      the benchmark's own training set, the skyline    <- source.train
    pool/           unlabelled candidate images                      <- source.pool's images
    images/         the images the three files name
    prepare.json    what was made from what; a rerun with the same recipe does nothing

Images are written once, named by their content hash (the pool cache's key), so a rerun writes
only what is missing, and the same config and seed give the same bytes. Questions are sampled by
`seed`, stratified by the benchmark's own splits. Eval images are dropped from the other three,
so nothing evaluated is trained on or retrieved.

    python -m mmgen.prepare +experiment=chartqa_mmgen
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import sys
from collections import Counter
from pathlib import Path

import hydra
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from mmgen import CONF_DIR, runner
from mmgen.contracts import (
    ContractError,
    read_json,
    validate_dataset,
    validate_reference,
    write_json,
)
from mmgen.errors import UserError
from mmgen.prepare_files import IMAGES, listing, prune, sample, sample_record, write_images
from mmgen.prepare_rows import Question, is_local
from mmgen.prepare_select import Splits, pool_images, usable_questions
from mmgen.stage import file_digest, launch

log = logging.getLogger(__name__)
ROLES = ("eval", "reference", "train")  # question files, eval first: the others drop its images
MANIFEST = "prepare.json"
SKIPS_LISTED = 20  # unreadable rows named in prepare.json; the rest are counted


def compute(cfg: DictConfig, work_dir: Path) -> dict:
    """Prepare dataset.root (or find it prepared); copy prepare.json into work_dir."""
    root = Path(cfg.dataset.root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".prepare.lock")):  # experiments sharing a root prepare it once
        manifest = prepared(cfg)
        if manifest is None:
            _check_ours(cfg)
            manifest = _prepare(cfg)
        else:
            log.info("%s is already prepared from %s", root, cfg.dataset.source.path)
    write_json(Path(work_dir) / MANIFEST, manifest)
    return manifest["counts"]


def recipe(cfg: DictConfig) -> dict:
    """Everything that shapes the prepared files, the code that writes them included."""
    dataset = cfg.dataset
    return {"source": OmegaConf.to_container(dataset.source, resolve=True, enum_to_str=True),
            "seed": cfg.seed, "description": dataset.description, "metric": _metric(cfg),
            "files": {role: dataset[role] for role in (*ROLES, "pool")}, "code": _code_digest()}


@functools.cache
def _code_digest() -> str:
    """Digest of the modules that turn rows into files: an edit there prepares again."""
    from mmgen import prepare_files, prepare_rows, prepare_select

    modules = (sys.modules[__name__], prepare_rows, prepare_files, prepare_select)
    sources = [inspect.getsource(module) for module in modules]
    return hashlib.sha256("\0".join(sources).encode()).hexdigest()[:16]


def prepared(cfg: DictConfig) -> dict | None:
    """The manifest when dataset.root holds exactly what this config prepares, else None."""
    root = Path(cfg.dataset.root)
    try:
        manifest = read_json(root / MANIFEST)
    except ContractError:
        return None
    if not isinstance(manifest, dict) or manifest.get("recipe") != recipe(cfg):
        return None
    if any(not (root / name).is_file() or file_digest(root / name) != digest
           for name, digest in manifest.get("files", {}).items()):
        return None
    return manifest if manifest.get("folders") == _folders(cfg) else None


def _folders(cfg: DictConfig) -> dict[str, str]:
    """Listings of the folders prepare owns: images/, and the pool when it prepares one."""
    root = Path(cfg.dataset.root)
    owned = [IMAGES] + ([cfg.dataset.pool] if cfg.dataset.source.pool.split else [])
    return {folder: listing(root / folder) for folder in owned}


def complete(cfg: DictConfig) -> bool:
    """For the runner: False when dataset.root was changed since it was prepared."""
    return prepared(cfg) is not None


def partition_upstream(cfg: DictConfig) -> tuple[str, ...]:
    """For the runner: partition reads what prepare writes, when dataset.source is set (a
    seed task file names its own images, so it is used as it is)."""
    return ("prepare",) if cfg.dataset.source is not None and not cfg.task_file else ()


def input_digests(cfg: DictConfig) -> dict[str, str]:
    """For the runner: listings of local source folders (a hub id is named by the config)."""
    source = cfg.dataset.source
    paths = {source.path} | {source[role].path for role in (*ROLES, "pool") if source[role].path}
    return {path: listing(Path(path).expanduser(), with_mtime=True)
            for path in sorted(paths) if is_local(path)}


def validate(cfg: DictConfig) -> None:
    """Checks that need no data: the source's keys, and that `datasets` is installed."""
    source = cfg.dataset.source
    if source is None:
        return
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise UserError("dataset.source needs the `datasets` package: pip install -e '.[hf]'")
    if not source.reference.split:
        raise UserError("dataset.source.reference.split is null: name the split the reference "
                        "questions come from")
    for role in (*ROLES, "pool"):
        spec = source[role]
        if spec.split and not cfg.dataset[role]:
            raise UserError(f"dataset.source.{role}.split is set but dataset.{role} is null: name "
                            f"the file (or folder) it is written to, relative to dataset.root")
        if role == "pool" and spec.split and not _plain_folder(cfg.dataset.pool):
            raise UserError(f"dataset.pool='{cfg.dataset.pool}' must name a folder inside "
                            "dataset.root when dataset.source.pool.split is set: prepare writes "
                            "the pool images there")
        if spec.count is not None and spec.count < 1:
            raise UserError(f"dataset.source.{role}.count={spec.count} must be at least 1, or "
                            "null for all")
    answer_format = getattr(source.answer_format, "value", source.answer_format)
    if answer_format != "text" and not (source.columns.options or source.options_in_question):
        raise UserError(f"dataset.source.answer_format={answer_format} needs the options: set "
                        "dataset.source.columns.options or dataset.source.options_in_question")
    if source.id_prefix and not source.columns.id:
        raise UserError("dataset.source.id_prefix needs dataset.source.columns.id")


# --- preparing -----------------------------------------------------------------------------

def _plain_folder(name: str) -> bool:
    """True for a folder inside dataset.root: not absolute, no '..', not a list file, tar
    shards or an hf:// pool."""
    path = Path(name)
    return ("://" not in name and not any(c in name for c in "{}") and not path.suffix
            and not path.is_absolute() and ".." not in path.parts)


def _metric(cfg: DictConfig) -> str | None:
    metric = OmegaConf.select(cfg, "dataset.metric", default=None, throw_on_missing=False)
    return getattr(metric, "value", metric)


def _check_ours(cfg: DictConfig) -> None:
    """Refuse to overwrite inputs at dataset.root that prepare did not write."""
    root = Path(cfg.dataset.root)
    if (root / MANIFEST).is_file():
        return
    names = [cfg.dataset[role] for role in ROLES if cfg.dataset[role]]
    taken = [name for name in names if (root / name).exists()]
    taken += [name for name in _folders(cfg) if (root / name).is_dir()
              and any((root / name).iterdir())]
    if taken:
        raise UserError(f"dataset.root '{root}' already holds {', '.join(taken)}, not written by "
                        "mmgen.prepare: move them away, set dataset.root to a new folder, or use "
                        "them as they are with dataset.source=null")


def _write_questions(cfg: DictConfig, role: str, chosen: list[tuple[Question, str]]) -> str:
    """Write one question file; returns its name relative to dataset.root."""
    name, path = cfg.dataset[role], Path(cfg.dataset.root) / cfg.dataset[role]
    data = {"image_folder": IMAGES, "dataset_description": cfg.dataset.description}
    if role == "eval" and _metric(cfg):
        data["metric"] = _metric(cfg)
    data["samples"] = [sample_record(q, image, role == "eval") for q, image in chosen]
    write_json(path, validate_dataset(data, path) if role == "train"
               else validate_reference(data, path))
    return name


def _prepare(cfg: DictConfig) -> dict:
    source, root = cfg.dataset.source, Path(cfg.dataset.root)
    write_json(root / MANIFEST, {"recipe": recipe(cfg), "state": "preparing"})  # root is ours:
    splits, skips, counts = Splits(source), [], {}                               # a rerun resumes
    eval_images: set[str] = set()
    written, kept_images = [], set()
    for role in ROLES:
        if not source[role].split:
            continue
        split = splits.get(role)
        usable, dropped = usable_questions(cfg, role, split, eval_images, skips)
        positions = sample([q.split for q, _ in usable], source[role].count, cfg.seed, role)
        chosen = [usable[p] for p in positions]
        write_images(split, source.columns.image, root / IMAGES, root / cfg.dataset.pool,
                     {image: q.row for q, image in chosen}, role)
        written.append(_write_questions(cfg, role, chosen))
        kept_images.update(image for _, image in chosen)
        if role == "eval":
            eval_images = {image.split(".")[0] for _, image in chosen}
        counts[f"{role}_questions"] = len(chosen)
        if role != "eval":
            counts[f"{role}_dropped_for_eval_images"] = dropped
    counts["stale_files_removed"] = prune(root / IMAGES, kept_images)
    if source.pool.split:  # only a pool prepare writes is ever pruned
        split = splits.get("pool")
        pool_files, dropped = pool_images(cfg, split, eval_images, skips)
        write_images(split, source.columns.image, root / cfg.dataset.pool, root / IMAGES,
                     pool_files, "pool")
        counts["pool_images"], counts["pool_dropped_for_eval_images"] = len(pool_files), dropped
        counts["stale_files_removed"] += prune(root / cfg.dataset.pool, set(pool_files))
    counts["rows_skipped"] = len(skips)
    for skip in skips[:SKIPS_LISTED]:
        log.warning("skipped %s row %d of %s: %s", skip["file"], skip["row"], skip["source"],
                    skip["reason"])
    manifest = {"recipe": recipe(cfg), "counts": counts,
                "skipped_by_file": dict(Counter(skip["file"] for skip in skips)),
                "skipped": skips[:SKIPS_LISTED],
                "files": {name: file_digest(root / name) for name in written},
                "folders": _folders(cfg)}
    write_json(root / MANIFEST, manifest)
    log.info("prepared %s: %s", root, ", ".join(f"{k} {v}" for k, v in counts.items()))
    return manifest


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    runner.run(cfg, "prepare")


if __name__ == "__main__":
    launch(main)
