"""Stage 6b, report: one self-contained HTML page to look at what the pipeline made.

    python -m mmgen.report +experiment=demo        # writes <out_dir>/report.html

The page holds the funnel per subgroup (reference -> candidates -> prompts -> ok/failed ->
samples -> kept), failures by error class, tokens and cost, a histogram of target-model losses
(kept vs dropped, inline SVG), stage times, and a gallery of samples with embedded JPEG
thumbnails, their Q/A, subgroup and loss, and their in-context examples on demand. Any input
file that is missing leaves its section saying so; the page never links outside itself.
"""
from __future__ import annotations

import html
import logging
from collections import Counter, defaultdict
from pathlib import Path
from string import Template

import hydra
from omegaconf import DictConfig

from mmgen import CONF_DIR, runner
from mmgen.contracts import (
    ContractError,
    iter_jsonl,
    load_dataset,
    load_task,
    read_generations,
    read_json,
)
from mmgen.report_sections import (
    failures_html,
    filter_html,
    gallery_html,
    histogram_svg,
    stages_html,
    summary_html,
    table,
    tokens_html,
)
from mmgen.stage import launch, out_dir

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).with_name("report_template.html")
FUNNEL_COLUMNS = ["reference", "candidates", "prompts", "ok", "failed", "samples", "checks", "kept"]


def run(cfg: DictConfig) -> Path:
    """Bring report.html up to date; returns out_dir."""
    return runner.run(cfg, "report")


def upstream(cfg: DictConfig) -> tuple[str, ...]:
    """The export, and with an eval set the trained and the base model's scores."""
    return ("export", "evaluate", "baseline") if cfg.dataset.eval else ("export",)


def compute(cfg: DictConfig, out: Path) -> dict:
    """Write report.html into out_dir."""
    return write_report(cfg, out)


def write_report(cfg: DictConfig, target_dir: Path) -> dict:
    """Gather every stage's files from out_dir and write report.html into `target_dir`."""
    inputs = gather(out_dir(cfg))
    page = render(cfg, inputs)
    path = target_dir / "report.html"
    temporary = path.with_name(".report.html.tmp")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(path)
    log.info("report: %s (%.0f KB, %d gallery cards)", path.resolve(), len(page) / 1024,
             page.count('class="card'))
    return {"bytes": len(page), "gallery_cards": page.count('class="card')}


def _optional(loader, path: Path):
    try:
        return loader(path) if path.exists() else None
    except ContractError as err:
        log.warning("report: leaving out %s: %s", path.name, err)
        return None


def gather(folder: Path) -> dict:
    """Every input the report reads; None where a file is missing."""
    prompts = _optional(lambda p: list(iter_jsonl(p)), folder / "prompts.jsonl") or []
    return {"task": _optional(load_task, folder / "task.json"), "prompts": prompts,
            "generations": _optional(read_generations, folder / "generations.jsonl") or {},
            "data": _optional(load_dataset, folder / "data.json"),
            "scores": _optional(lambda p: list(iter_jsonl(p)), folder / "scores.jsonl") or [],
            "stats": _optional(read_json, folder / "stats.json") or {},
            "accuracy": {label: _optional(read_json, folder / name / "metrics.json")
                         for label, name in (("base", "eval_base"), ("trained", "eval"))}}


def funnel_rows(inputs: dict) -> dict[str, Counter]:
    """Counts per subgroup keyword for each funnel column."""
    rows: dict[str, Counter] = defaultdict(Counter)
    for group in (inputs["task"] or {}).get("subgroups", []):
        rows[group["keyword"]]["reference"] += len(group["reference_sample_idx"])
        rows[group["keyword"]]["candidates"] += len(group.get("candidate_image_paths", []))
    keyword_of_prompt = {p["id"]: p.get("keyword", "?") for p in inputs["prompts"]}
    for prompt_id, keyword in keyword_of_prompt.items():
        rows[keyword]["prompts"] += 1
    for prompt_id, record in inputs["generations"].items():
        rows[keyword_of_prompt.get(prompt_id, "?")][record["status"]] += 1
    for sample in (inputs["data"] or {}).get("samples", []):
        rows[sample.get("keyword") or "?"]["samples"] += 1
    for score in inputs["scores"]:
        keyword = score.get("keyword") or "?"
        rows[keyword]["kept"] += bool(score["kept"])
        rows[keyword]["checks"] += score.get("removed_by") not in (None, "score")
    return rows


def gallery_samples(inputs: dict, per_subgroup: int) -> list[tuple[dict, dict]]:
    """(sample, score record) pairs: per subgroup, evenly spread over the loss ranking."""
    scored = {s["id"]: s for s in inputs["scores"] if s.get("score") is not None}
    by_keyword: dict[str, list] = defaultdict(list)
    for sample in (inputs["data"] or {}).get("samples", []):
        if str(sample["id"]) in scored:
            by_keyword[sample.get("keyword") or "?"].append((sample, scored[str(sample["id"])]))
    chosen = []
    for keyword in sorted(by_keyword):
        ranked = sorted(by_keyword[keyword], key=lambda pair: -pair[1]["score"])
        count = min(per_subgroup, len(ranked))
        step = len(ranked) / count if count else 1
        chosen += [ranked[int(i * step)] for i in range(count)]
    return chosen


def render(cfg: DictConfig, inputs: dict) -> str:
    """The whole page as one string."""
    rows = funnel_rows(inputs)
    funnel = [[k] + [rows[k][c] for c in FUNNEL_COLUMNS] for k in sorted(rows)]
    totals = ["total"] + [sum(rows[k][c] for k in rows) for c in FUNNEL_COLUMNS]
    cards, thumb_styles, note = gallery_html(cfg, inputs, gallery_samples(
        inputs, cfg.report.gallery_per_subgroup))
    fields = {
        "name": html.escape(str(cfg.name)),
        "subtitle": html.escape(f"dataset {cfg.dataset.name} ({cfg.dataset.root}); mode "
                                f"{cfg.mode.name}; target-model filter keeps "
                                f"{cfg.filter.keep_fraction:g} ({cfg.filter.select} loss)"),
        "summary": summary_html(inputs, totals),
        "funnel": table(["subgroup"] + FUNNEL_COLUMNS, funnel, totals) if funnel
        else "<p class='note'>No subgroups found.</p>",
        "failures": failures_html(inputs), "tokens": tokens_html(inputs),
        "histogram": histogram_svg(inputs["scores"], cfg.report.histogram_bins),
        "filter_table": filter_html(inputs), "stages": stages_html(inputs),
        "gallery": cards, "thumb_styles": thumb_styles, "gallery_note": note,
    }
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(fields)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
