"""Stage 1, partition: split the reference set into keyword subgroups by CLIP zero-shot
classification, and write `<out_dir>/partition.json` (a seed-format task file, no candidates
yet; retrieve adds them in task.json).

The `refset` group reshapes the subgroups for the seed's ablations: full, imbalanced, small,
no_partition. With `task_file` set, the file's subgroups are used as they are: a task file fixes
the subgroups (the seed's imbalanced and small task files are already cut), so a refset other
than `full` is not applied to it again.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from mmgen import CONF_DIR, runner
from mmgen.contracts import ContractError, load_reference, load_task, sample_image_path, write_task
from mmgen.stage import file_digests, launch

log = logging.getLogger(__name__)

MISSING_SHOWN = 5  # missing image paths quoted in the error, beyond the count


def run(cfg: DictConfig) -> Path:
    """Bring partition.json with the subgroups up to date; returns out_dir."""
    return runner.run(cfg, "partition")


def input_digests(cfg: DictConfig) -> dict[str, str]:
    """For the runner: digests of the files the partition reads."""
    return file_digests(input_files(cfg))


def input_files(cfg: DictConfig) -> list[Path]:
    """What the partition reads beyond the config: the reference set, its images, the task
    file, a local CLIP checkpoint (replacing any of them under the same name invalidates it)."""
    root = Path(cfg.dataset.root)
    source = Path(cfg.task_file) if cfg.task_file else root / cfg.dataset.reference
    from mmgen.clip import resolve_weights  # the checkpoint actually loaded, the demo's included

    files = [source] + [Path(path) for path in (resolve_weights(cfg.clip),) if path]
    if source.is_file():
        try:
            reference = load_task(source) if cfg.task_file else load_reference(source)
        except (ValueError, OSError):  # reported properly when the stage reads it
            return files
        files += [root / image for _, image in reference_images(reference)]
    return files


def compute(cfg: DictConfig, work_dir: Path) -> dict:
    """Write partition.json (the subgroups, no candidates yet) into work_dir."""
    root = Path(cfg.dataset.root)
    keywords = list(cfg.dataset.keywords)
    if cfg.task_file:
        task = load_task_file(cfg)
        source = f"task file {cfg.task_file}"
    else:
        task = load_reference(root / cfg.dataset.reference)
        if cfg.check_images:
            check_images_exist(root / cfg.dataset.reference, root, reference_images(task))
        if not keywords:
            raise ValueError(f"dataset.keywords is empty for dataset '{cfg.dataset.name}': "
                             "list the subgroup keywords, e.g. [bar chart, pie chart]")
        if cfg.refset.name == "no_partition" or len(keywords) == 1:
            keyword = keywords[0] if len(keywords) == 1 else " or ".join(keywords)
            task["subgroups"] = [_subgroup(keyword, range(len(task["samples"])))]
            source = "one subgroup, no classification needed"
        else:
            task["subgroups"] = classify(cfg, task, keywords)
            source = f"CLIP {cfg.clip.arch} zero-shot"
    if not cfg.task_file:
        task["subgroups"] = apply_refset(task["subgroups"], cfg.refset, keywords, cfg.seed)
    elif cfg.refset.name != "full":
        log.warning("partition: refset=%s is not applied to task_file %s: a task file fixes the "
                    "subgroups, and they are used as they are", cfg.refset.name, cfg.task_file)
    counts = {group["keyword"]: len(group["reference_sample_idx"]) for group in task["subgroups"]}
    log.info("partition (%s, refset=%s): %s", source, cfg.refset.name,
             ", ".join(f"{keyword}: {count}" for keyword, count in counts.items()))
    write_task(work_dir / "partition.json", task)  # one file per stage: retrieve writes task.json
    return {"source": source, "refset": cfg.refset.name, "samples": len(task["samples"]),
            "subgroup_sizes": counts}


def _subgroup(keyword: str, indices) -> dict:
    return {"keyword": keyword, "reference_sample_idx": sorted(int(i) for i in indices),
            "candidate_image_paths": []}


def reference_images(reference: dict) -> list[tuple[str, str]]:
    """(record and field, image path relative to dataset.root) for every reference sample."""
    return [(f"sample {index} field 'image_1'", sample_image_path(reference, sample))
            for index, sample in enumerate(reference["samples"])]


def check_images_exist(path: Path, root: Path, images: list[tuple[str, str]]) -> None:
    """One error for all missing images: the first one's record, the count, a few more paths."""
    missing = [(where, image) for where, image in images if not (root / image).is_file()]
    if not missing:
        return
    (where, image), others = missing[0], missing[1:MISSING_SHOWN]
    more = "; also " + ", ".join(f"{w}: '{i}'" for w, i in others) if others else ""
    raise ContractError(path, where, f"image '{image}' not found under dataset.root '{root}' "
                        f"({len(missing)} of {len(images)} images missing{more}); fix "
                        "dataset.root or the paths in the file (or set check_images=false)")


def load_task_file(cfg: DictConfig) -> dict:
    """Load a seed-format task file; with check_images, every image it names must exist."""
    path, root = Path(cfg.task_file), Path(cfg.dataset.root)
    task = load_task(path)
    if cfg.check_images:
        candidates = [(f"subgroup {group_index} ('{group['keyword']}') field "
                       + f"'candidate_image_paths[{position}]'", candidate)
                      for group_index, group in enumerate(task["subgroups"])
                      for position, candidate in enumerate(group.get("candidate_image_paths", []))]
        check_images_exist(path, root, reference_images(task) + candidates)
    return task


def classify(cfg: DictConfig, reference: dict, keywords: list[str]) -> list[dict]:
    """One subgroup per keyword: each reference image goes to its most similar keyword text."""
    from mmgen.clip import ClipEncoder
    from mmgen.pool import EmbeddingStore, FileHasher

    root = Path(cfg.dataset.root)
    images = [root / sample_image_path(reference, sample) for sample in reference["samples"]]
    encoder = ClipEncoder(cfg.clip)
    hashes = FileHasher(cfg.paths.cache_dir, cfg.clip.num_workers).hash(images)
    store = EmbeddingStore(cfg.paths.cache_dir, encoder)
    store.add(images, hashes, label="reference images")
    for index, file_hash in enumerate(hashes):
        if file_hash in store.failures:
            raise ContractError(root / cfg.dataset.reference, f"sample {index} field 'image_1'",
                                f"image '{images[index]}' cannot be read "
                                f"({store.failures[file_hash]}); replace or remove the sample")
    queries = encoder.keyword_queries(keywords, list(cfg.clip.templates))
    assigned = (store.gather(hashes) @ queries.T).argmax(axis=1)
    subgroups = []
    for keyword_index, keyword in enumerate(keywords):
        members = np.flatnonzero(assigned == keyword_index)
        if not len(members):
            log.warning("partition: no reference image was classified as '%s'; dropping that "
                        "keyword's subgroup", keyword)
            continue
        subgroups.append(_subgroup(keyword, members))
    return subgroups


def apply_refset(subgroups: list[dict], refset: DictConfig, keywords: list[str],
                 seed: int) -> list[dict]:
    """Reshape subgroups for the seed's reference-set ablations, deterministically by seed."""
    rng = np.random.default_rng(seed)

    def sample(group: dict, size: int) -> dict:
        kept = rng.choice(group["reference_sample_idx"], size=size, replace=False)
        return {**group, "reference_sample_idx": sorted(int(i) for i in kept)}

    sizes = [len(group["reference_sample_idx"]) for group in subgroups]
    if refset.name == "small":
        return [sample(group, max(1, math.ceil(size * refset.fraction)))
                for group, size in zip(subgroups, sizes)]
    if refset.name == "imbalanced":
        largest = int(np.argmax(sizes))
        return [sample(group, min(sizes)) if index == largest else group
                for index, group in enumerate(subgroups)]
    if refset.name == "no_partition" and len(subgroups) > 1:
        keyword = refset.keyword or " or ".join(group["keyword"] for group in subgroups)
        merged = _subgroup(keyword, set().union(*(g["reference_sample_idx"] for g in subgroups)))
        merged["candidate_image_paths"] = list(dict.fromkeys(
            path for group in subgroups for path in group.get("candidate_image_paths", [])))
        return [merged]
    if refset.name == "no_partition" and refset.keyword:
        return [{**subgroups[0], "keyword": refset.keyword}]
    return subgroups


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
