"""Stage 2, retrieve: pick candidate pool images for each subgroup and add them, with their
scores, to `<out_dir>/task.json` (paths relative to dataset.root).

The pool is embedded once per model into the content-keyed cache (mmgen.pool); sharded jobs
(`shard.count > 1`) only embed their slice, and a later plain run merges the slices and selects.
No reference or eval image comes back: copies are caught by content hash, near duplicates by
cosine. Quotas follow `caps_per_image`; a shortfall is logged, never padded.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from mmgen import CONF_DIR, runner
from mmgen.contracts import load_reference, load_task, sample_image_path, write_task
from mmgen.errors import StageStop, UserError
from mmgen.pool import place_candidates
from mmgen.stage import launch, out_dir, update_stats
from mmgen.topk import select_top_k, subgroup_quotas

log = logging.getLogger(__name__)

LISTED_FAILURES = 100  # unreadable pool files named one by one in the log and stats


def run(cfg: DictConfig) -> Path:
    """Bring task.json with the candidates up to date (or embed one pool shard); returns out_dir."""
    return runner.run(cfg, "retrieve")


def _tools(cfg: DictConfig):
    from mmgen.clip import ClipEncoder
    from mmgen.pool import EmbeddingStore, FileHasher

    encoder = ClipEncoder(cfg.clip)
    hasher = FileHasher(cfg.paths.cache_dir, cfg.clip.num_workers)
    return encoder, hasher, EmbeddingStore(cfg.paths.cache_dir, encoder)


def input_digests(cfg: DictConfig) -> dict[str, str]:
    """For the runner: the pool's listing and the eval set (what retrieval reads)."""
    from mmgen.pool import retrieval_inputs_digest

    try:
        return {"pool": retrieval_inputs_digest(cfg)}
    except UserError:  # no pool: fine for a task file with candidates; compute says if not
        return {"pool": "absent"}


def embed_shard(cfg: DictConfig) -> None:
    """With shard.count > 1: embed slice shard.index of the pool into the shared cache and stop;
    a later plain run merges the slices and selects."""
    from mmgen.pool import open_pool, pool_listing

    index, count = cfg.shard.index, cfg.shard.count
    if count == 1:
        return
    source = open_pool(cfg)
    listing = pool_listing(source, index, count)
    _, hasher, store = _tools(cfg)
    counts = store.add(listing.items, source.hashes(listing, hasher),
                       label=f"pool shard {index + 1}/{count}")
    log.info("pool shard %d/%d: %d images embedded, %d already cached, in %s; run again "
             "without shard.count to merge the shards and select candidates",
             index + 1, count, counts["embedded"], counts["cached"], store.directory)
    update_stats(cfg, f"retrieve_shard_{index}_of_{count}", counts)
    raise StageStop(f"pool shard {index + 1}/{count} embedded into {store.directory}; run again "
                    "without shard.count to merge the shards and select candidates")


@dataclass
class PoolView:
    """The pool images that may become candidates, and why the others may not."""

    candidates: list[tuple] = field(default_factory=list)  # (pool item, hash), unique content
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> count
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (item name, reason)
    listing_skipped: int = 0  # entries not even listed: dangling or looping links, bad shards


def _held_out_images(cfg: DictConfig) -> list[str]:
    """The eval set's images relative to dataset.root (none without dataset.eval)."""
    if not cfg.dataset.eval:
        return []
    eval_path = Path(cfg.dataset.root) / cfg.dataset.eval
    if not eval_path.is_file():
        raise FileNotFoundError(f"dataset.eval '{eval_path}' not found: fix the path, or set "
                                "dataset.eval=null to skip the eval-leakage check")
    held_out = load_reference(eval_path)
    return sorted({sample_image_path(held_out, sample) for sample in held_out["samples"]})


def scan_pool(pool_items: list, pool_hashes: list[str], failures: dict[str, str],
              excluded_hashes: dict[str, set[str]]) -> PoolView:
    """Drop unreadable images, content copies of excluded images, and duplicate content."""
    view = PoolView(excluded={f"{name} copies": 0 for name in excluded_hashes})
    view.excluded["duplicate pool files"] = 0
    seen: set[str] = set()
    for item, file_hash in zip(pool_items, pool_hashes):
        reason = next((name for name, hashes in excluded_hashes.items() if file_hash in hashes),
                      None)
        if file_hash in failures:
            view.unreadable.append((item.name, failures[file_hash]))
        elif reason:
            view.excluded[f"{reason} copies"] += 1
        elif file_hash in seen:
            view.excluded["duplicate pool files"] += 1
        else:
            seen.add(file_hash)
            view.candidates.append((item, file_hash))
    return view


def guard_task_file_candidates(cfg: DictConfig, task: dict, todo: list[int]) -> dict[str, int]:
    """Drop a task file's own candidates that are reference or eval images: the same path, or
    the same content where both files exist (the seed's ai2d task file lists every reference
    image among its candidates). Returns the count dropped per reason."""
    from mmgen.pool import FileHasher

    root = Path(cfg.dataset.root)
    kept = [i for i in range(len(task["subgroups"])) if i not in todo]
    if not kept:
        return {}
    guards = {"reference": [sample_image_path(task, s) for s in task["samples"]],
              "eval": _held_out_images(cfg)}
    by_path = {os.path.normpath(path): reason for reason, paths in guards.items()
               for path in paths}
    hasher = FileHasher(cfg.paths.cache_dir, cfg.clip.num_workers)

    def hashes(paths: list[str]) -> dict[str, str]:  # empty files are no images: not compared
        present = [path for path in paths
                   if (root / path).is_file() and (root / path).stat().st_size > 0]
        return dict(zip(present, hasher.hash([root / path for path in present])))

    by_hash = {file_hash: reason for reason, paths in guards.items()
               for file_hash in hashes(paths).values()}
    dropped = {"reference": 0, "eval": 0}
    for index in kept:
        group = task["subgroups"][index]
        paths, scores = group["candidate_image_paths"], group.get("candidate_scores")
        content = hashes(paths) if by_hash else {}
        reasons = [by_path.get(os.path.normpath(path)) or by_hash.get(content.get(path))
                   for path in paths]
        if not any(reasons):
            continue
        for reason in filter(None, reasons):
            dropped[reason] += 1
        log.warning("retrieve: subgroup %d ('%s') of the task file lists %d reference/eval "
                    "images among its candidates; dropping them (leakage guard)", index,
                    group["keyword"], sum(map(bool, reasons)))
        group["candidate_image_paths"] = [p for p, r in zip(paths, reasons) if not r]
        if scores is not None:
            group["candidate_scores"] = [s for s, r in zip(scores, reasons) if not r]
    return dropped


def compute(cfg: DictConfig, work_dir: Path) -> dict:
    """Add candidates to partition.json's subgroups and write task.json into work_dir."""
    task = load_task(out_dir(cfg) / "partition.json")
    subgroups = task["subgroups"]
    todo = [i for i, group in enumerate(subgroups) if not group.get("candidate_image_paths")]
    guarded = guard_task_file_candidates(cfg, task, todo)
    if not todo:
        log.info("retrieve: every subgroup of the task file has candidates; keeping them")
        write_task(work_dir / "task.json", task)
        return {"kept_from_task_file": len(subgroups), "excluded": guarded}
    encoder, hasher, store = _tools(cfg)
    view, guard_hashes, embedding = _prepare_pool(cfg, task, hasher, store)
    retriever = instantiate(cfg.retrieval)
    all_quotas = subgroup_quotas(cfg.total_gen, [len(g["reference_sample_idx"]) for g in subgroups],
                                 cfg.caps_per_image.num_captions)
    quotas = [all_quotas[i] for i in todo]
    chosen, search = _search(cfg, task, todo, quotas, retriever, encoder, store, view,
                             guard_hashes)
    view.excluded["near duplicates"] = search["near_duplicates"]
    log.info("retrieve: %d unreadable pool files skipped; excluded %s (near duplicates: of the "
             "images that would have been taken)", len(view.unreadable),
             ", ".join(f"{count} {reason}" for reason, count in view.excluded.items()))

    subgroup_stats = {}
    for group_index, quota, supply, (positions, scores) in zip(todo, quotas, search["supply"],
                                                               chosen):
        group = subgroups[group_index]
        group["candidate_image_paths"], sources = place_candidates(
            [view.candidates[p][0] for p in positions], [view.candidates[p][1] for p in positions],
            Path(cfg.dataset.root))
        group.pop("candidate_sources", None)
        if any(sources):  # from tar shards or datasets: where each extracted image came from
            group["candidate_sources"] = sources
        group.pop("candidate_scores", None)
        if retriever.scored:
            group["candidate_scores"] = [round(float(s), 6) for s in scores]
        if len(positions) < quota:
            log.warning("retrieve: subgroup '%s' needs %d images but only %d pool images qualify "
                        "(retrieval=%s, min_score=%s); taking %d, not padding", group["keyword"],
                        quota, supply, retriever.name, retriever.min_score, len(positions))
        log.info("retrieve: '%s' gets %d of %d candidates", group["keyword"], len(positions), quota)
        subgroup_stats[group["keyword"]] = {"quota": quota, "taken": len(positions),
                                            "supply": int(supply)}
    write_task(work_dir / "task.json", task)
    return {"retrieval": retriever.name, "pool_files": embedding["embedded"] + embedding["cached"],
            "embedding": embedding, "excluded": view.excluded, "unreadable": len(view.unreadable),
            "skipped_while_listing": view.listing_skipped,
            "unreadable_files": [{"path": p, "reason": r}
                                 for p, r in view.unreadable[:LISTED_FAILURES]],
            "subgroups": subgroup_stats, "task_file_candidates_excluded": guarded}


def _prepare_pool(cfg: DictConfig, task: dict, hasher, store) -> tuple[PoolView, list[str], dict]:
    """Embed what is new (pool, reference and eval images) and decide which images may be taken.

    Returns the pool view, the reference-then-eval image hashes, and the embedding counts.
    """
    from mmgen.pool import open_pool, pool_listing, unusable_pool_error

    root = Path(cfg.dataset.root)

    def hashes_of(paths: list[str]) -> list[str]:
        return hasher.hash([root / path for path in paths])

    source = open_pool(cfg)
    listing = pool_listing(source)
    pool_hashes = source.hashes(listing, hasher)
    embedding = store.add(listing.items, pool_hashes, label="pool")
    reference_images = [sample_image_path(task, sample) for sample in task["samples"]]
    eval_images = _held_out_images(cfg)
    guard_hashes = hashes_of(reference_images) + hashes_of(eval_images)
    store.add([root / p for p in reference_images + eval_images], guard_hashes, "reference/eval")
    kept = [path for group in task["subgroups"] for path in group.get("candidate_image_paths", [])]
    view = scan_pool(listing.items, pool_hashes, store.failures, {
        "reference": set(guard_hashes[:len(reference_images)]),
        "eval": set(guard_hashes[len(reference_images):]),
        "task file candidate": set(hashes_of(kept))})
    view.listing_skipped = len(listing.skipped)
    for path, reason in view.unreadable[:LISTED_FAILURES]:
        log.warning("retrieve: skipping unreadable pool file %s: %s", path, reason)
    if len(view.unreadable) > LISTED_FAILURES:
        log.warning("retrieve: ... and %d more unreadable pool files",
                    len(view.unreadable) - LISTED_FAILURES)
    if not view.candidates:
        raise unusable_pool_error(source, listing, view.unreadable, view.excluded)
    return view, guard_hashes, embedding


def _search(cfg: DictConfig, task: dict, todo: list[int], quotas: list[int], retriever, encoder,
            store, view: PoolView, guard_hashes: list[str]):
    """Run the retrieval method over the pool view: (positions, scores) per subgroup in todo."""
    from mmgen.retrievers import RetrievalContext

    subgroups = task["subgroups"]
    readable_guard = [h for h in guard_hashes if h not in store.failures]
    context = RetrievalContext(
        keywords=[subgroups[i]["keyword"] for i in todo], templates=list(cfg.clip.templates),
        encoder=encoder, reference_embeddings=[store.gather(
            [guard_hashes[j] for j in subgroups[i]["reference_sample_idx"]
             if guard_hashes[j] not in store.failures]) for i in todo],
        num_candidates=len(view.candidates), seed=cfg.seed)
    width = max([len(todo), *(len(group) for group in context.reference_embeddings)])
    min_score = retriever.min_score if retriever.scored else -np.inf
    return select_top_k(store.layout([file_hash for _, file_hash in view.candidates]),
                        retriever.score_fn(context), quotas, min_score,
                        store.gather(readable_guard) if readable_guard else None,
                        retriever.near_duplicate_cosine, width)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
