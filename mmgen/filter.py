"""Stage 5, filter: keep the generated samples the target model finds hardest (MM-Gen's filter).

    python -m mmgen.filter +experiment=demo [filter.select=low] [filter.keep_fraction=0.3]

Reads `<out_dir>/data.json`, drops samples that fail the cheap checks (mmgen/scoring/checks.py),
scores the rest with the target model (mean answer-token loss) and keeps `filter.keep_fraction`
of them: the highest losses (`select=high`, the paper's choice), the lowest, or a random share.
Writes `filtered.json` (the kept samples, each with its `target_loss`) and `scores.jsonl` (every
sample: score, kept, and which check removed it).

Scoring is shardable: `-m shard.index=0,1,2,3 shard.count=4` scores one slice per job into
`scores.shard-<i>-of-<n>.jsonl` (resumable), and the run that finds all slices merges them.
On a cluster add `hydra/launcher=submitit_slurm`; run `python -m mmgen.generate` first, once.
An unsharded run keeps its scores in `scores.shard-0-of-1.jsonl` the same way, so a killed run
resumes, and a new `keep_fraction` or `select` reuses the scores instead of scoring again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import time
from contextlib import ExitStack
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mmgen import CONF_DIR, runner
from mmgen.contracts import (
    AppendLog,
    ContractError,
    iter_jsonl,
    load_dataset,
    read_log,
    write_dataset,
    write_jsonl,
)
from mmgen.errors import StageStop
from mmgen.runner import code_digest, fingerprint
from mmgen.scoring import build_scorer
from mmgen.scoring.checks import CHECK_NAMES, apply_checks
from mmgen.stage import file_digest, file_digests, launch, out_dir
from mmgen.stages import STAGES

log = logging.getLogger(__name__)
SHARD_NAME = re.compile(r"scores\.shard-(\d+)-of-(\d+)\.jsonl$")


def run(cfg: DictConfig) -> Path:
    """Bring filtered.json up to date (or score this job's shard); returns out_dir."""
    return runner.run(cfg, "filter")


def score_own_shard(cfg: DictConfig) -> None:
    """With shard.count > 1: score this job's slice, and stop unless every slice is scored."""
    if cfg.shard.count == 1:
        return
    passed, _ = checked_samples(cfg)
    score_shard(cfg, passed, cfg.shard.index, cfg.shard.count)
    if merged_shard_scores(cfg, passed) is None:
        raise StageStop(f"filter: shard {cfg.shard.index} of {cfg.shard.count} scored; the run "
                        "that finds every shard merges them")


def input_digests(cfg: DictConfig) -> dict[str, str]:
    """For the runner: data.json, which a resumed generate can grow under the same config."""
    return file_digests([out_dir(cfg) / "data.json"])


def checked_samples(cfg: DictConfig) -> tuple[list[dict], dict[str, str]]:
    """data.json's samples that pass the cheap checks, and the check that removed each other id."""
    dataset = load_dataset(out_dir(cfg) / "data.json")
    return apply_checks(dataset["samples"], cfg.filter.checks)


def scoring_key(cfg: DictConfig) -> str:
    """Identifies what shard files hold: the data, the checks and the scorer, its code included
    (not the selection)."""
    payload = {"generate": fingerprint(cfg, "generate"),
               "data": file_digest(out_dir(cfg) / "data.json"),
               "code": code_digest(STAGES["filter"]),
               "scorer": OmegaConf.to_container(cfg.filter.scorer, resolve=True),
               "checks": OmegaConf.to_container(cfg.filter.checks, resolve=True)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def shard_path(cfg: DictConfig, index: int, count: int) -> Path:
    return out_dir(cfg) / f"scores.shard-{index}-of-{count}.jsonl"


def score_shard(cfg: DictConfig, passed: list[dict], index: int, count: int) -> dict[str, float]:
    """Score slice `index` of `count` into its shard file, resuming a partial one; id -> loss."""
    final_path, key = shard_path(cfg, index, count), scoring_key(cfg)
    done = read_shard(final_path, key)
    if done is not None:
        return done
    partial_path = final_path.with_name(final_path.name + ".partial")
    records = read_log(partial_path)
    if records and records[0].get("scoring") != key:
        log.warning("%s was made from other data or another scorer; starting it over", partial_path)
        partial_path.unlink()
        records = []
    done = {r["id"]: r["score"] for r in records[1:]}
    todo = [s for s in passed[index * len(passed) // count:(index + 1) * len(passed) // count]
            if str(s["id"]) not in done]
    scorer = build_scorer(cfg.filter)
    image_root = load_dataset(out_dir(cfg) / "data.json")["image_folder"]
    # the file opens with its first scores: a run that never scored leaves no .partial behind
    header = [] if records else [{"scoring": key, "shard": index, "count": count}]
    started, chunk, shard_log = time.perf_counter(), scorer.batch_size * 8, None
    with ExitStack() as stack, tqdm(total=len(todo), desc="filter: scoring",
                                    unit="sample") as bar:
        for start in range(0, len(todo), chunk):
            batch = todo[start:start + chunk]
            scored = []
            for sample, loss in zip(batch, scorer.score(batch, image_root)):
                if not math.isfinite(loss):
                    raise ValueError(f"data.json sample '{sample['id']}': the scorer returned "
                                     f"{loss}; try filter.scorer.dtype=float32")
                done[str(sample["id"])] = loss
                scored.append({"id": str(sample["id"]), "score": loss})
            shard_log = shard_log or stack.enter_context(AppendLog(partial_path))
            shard_log.append_many(header + scored)
            header = []
            bar.update(len(batch))
    if header:  # nothing to score in this slice: the shard is its header alone
        with AppendLog(partial_path) as empty_log:
            empty_log.append_many(header)
    seconds = time.perf_counter() - started
    log.info("filter: scored %d samples with %s in %.1f s (%.1f samples/s)", len(todo),
             scorer.name, seconds, len(todo) / seconds if seconds else 0.0)
    partial_path.replace(final_path)
    return done


def read_shard(path: Path, key: str) -> dict[str, float] | None:
    """A finished shard file's scores when it was made for `key`, else None."""
    if not path.is_file():
        return None
    records = list(iter_jsonl(path))
    if not records or records[0].get("scoring") != key:
        return None
    return {r["id"]: r["score"] for r in records[1:]}


def merged_shard_scores(cfg: DictConfig, passed: list[dict]) -> dict[str, float] | None:
    """Scores from a complete, current set of shard files covering every sample, else None."""
    key, wanted = scoring_key(cfg), {str(s["id"]) for s in passed}
    counts = sorted({int(m.group(2)) for p in out_dir(cfg).iterdir()
                     if (m := SHARD_NAME.match(p.name))}, reverse=True)
    for count in counts:
        parts = [read_shard(shard_path(cfg, i, count), key) for i in range(count)]
        if any(part is None for part in parts):
            continue
        merged = {k: v for part in parts for k, v in part.items()}
        if wanted <= merged.keys():
            return {k: merged[k] for k in wanted}
        log.warning("shard files of %d shards miss %d samples; ignoring them", count,
                    len(wanted - merged.keys()))
    return None


def select_ids(scores: dict[str, float], keep_fraction: float, how: str, seed: int) -> set[str]:
    """The ids kept: `keep_fraction` of all, by highest loss, lowest loss or at random."""
    ids = sorted(scores)
    keep = round(keep_fraction * len(ids))
    if how == "random":
        return set(random.Random(seed).sample(ids, keep))
    sign = -1.0 if how == "high" else 1.0
    return set(sorted(ids, key=lambda i: (sign * scores[i], i))[:keep])


def compute(cfg: DictConfig, work_dir: Path) -> dict:
    """Check, score, select; write filtered.json and scores.jsonl into work_dir."""
    data_path = out_dir(cfg) / "data.json"
    dataset = load_dataset(data_path)
    passed, removed = apply_checks(dataset["samples"], cfg.filter.checks)
    scores = merged_shard_scores(cfg, passed)
    if scores is None:
        scores = score_shard(cfg, passed, 0, 1)
    missing = [str(s["id"]) for s in passed if str(s["id"]) not in scores]
    if missing:
        raise ContractError(data_path, f"sample '{missing[0]}'", "has no score; delete the "
                            "scores.shard-*.jsonl files in out_dir and rerun the filter")
    scores = {str(s["id"]): scores[str(s["id"])] for s in passed}
    kept_ids = select_ids(scores, cfg.filter.keep_fraction, cfg.filter.select, cfg.seed)
    kept = [{**s, "target_loss": scores[str(s["id"])]} for s in passed if str(s["id"]) in kept_ids]
    write_dataset(work_dir / "filtered.json", {**dataset, "samples": kept})
    write_jsonl(work_dir / "scores.jsonl", (
        {"id": str(s["id"]), "keyword": s.get("keyword"), "score": scores.get(str(s["id"])),
         "kept": str(s["id"]) in kept_ids,
         "removed_by": removed.get(str(s["id"])) or (None if str(s["id"]) in kept_ids else "score")}
        for s in dataset["samples"]))
    kept_losses = [scores[i] for i in kept_ids]
    dropped_losses = [v for i, v in scores.items() if i not in kept_ids]
    by_check = {name: sum(1 for v in removed.values() if v == name) for name in CHECK_NAMES}
    log.info("filter: %d samples; checks removed %s; kept %d of %d scored (select=%s)",
             len(dataset["samples"]), by_check, len(kept), len(scores), cfg.filter.select)
    return {"samples": len(dataset["samples"]), "removed": by_check, "scored": len(scores),
            "kept": len(kept), "dropped_by_score": len(scores) - len(kept),
            "select": cfg.filter.select, "keep_fraction": cfg.filter.keep_fraction,
            "scorer": build_scorer(cfg.filter).name,  # lazy: names the model, loads nothing
            "mean_loss_kept": _mean(kept_losses), "mean_loss_dropped": _mean(dropped_losses)}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
