"""The report's HTML pieces: tables, the loss histogram (inline SVG) and the gallery cards."""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig

from mmgen.contracts import question_and_answer, sample_image_path
from mmgen.imageio import ImageError, open_image
from mmgen.metrics import accuracy_text
from mmgen.scoring import IMAGE_TAG

ICL_THUMB_SIDE = 96  # pixels; in-context example thumbnails, embedded once per reference image


def table(header: list[str], rows: list[list], total: list | None = None,
          text_columns: tuple[int, ...] = (0,)) -> str:
    """An HTML table with escaped cells; `text_columns` align left, numbers right."""
    def cells(row: list) -> str:
        return "".join(f'<td{" class=text" if i in text_columns else ""}>{html.escape(str(c))}</td>'
                       for i, c in enumerate(row))

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(f"<tr>{cells(row)}</tr>" for row in rows)
    if total:
        body += f'<tr class="total">{cells(total)}</tr>'
    return f"<table><tr>{head}</tr>{body}</table>"


def histogram_svg(scores: list[dict], bins: int) -> str:
    """Stacked bars of loss counts, kept (green) over dropped (red), as inline SVG."""
    values = [(s["score"], bool(s["kept"])) for s in scores if s.get("score") is not None]
    if not values:
        return "<p class='note'>No scores (scores.jsonl missing or empty).</p>"
    low, high = min(v for v, _ in values), max(v for v, _ in values)
    span = (high - low) or 1.0
    kept, dropped = [0] * bins, [0] * bins
    for value, is_kept in values:
        index = min(bins - 1, int((value - low) / span * bins))
        (kept if is_kept else dropped)[index] += 1
    width, height, left, bottom = 460, 220, 36, 30
    peak, bar = max(k + d for k, d in zip(kept, dropped)), (width - left - 10) / bins
    scale = (height - bottom - 10) / peak
    axis_y = height - bottom
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
              f'role="img" aria-label="loss histogram">'),
             f'<line x1="{left}" y1="{axis_y}" x2="{width - 5}" y2="{axis_y}" stroke="#888"/>',
             f'<text x="{left - 4}" y="14" font-size="11" text-anchor="end">{peak}</text>']
    for i, (k, d) in enumerate(zip(kept, dropped)):
        x = left + i * bar
        for count, base, colour in ((d, 0, "#c0504d"), (k, d, "#2e8b57")):
            if count:
                y = height - bottom - (base + count) * scale
                parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" '
                             f'height="{count * scale:.1f}" fill="{colour}"/>')
    for fraction in (0.0, 0.5, 1.0):
        x = left + fraction * (width - left - 10)
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="11" '
                     f'text-anchor="middle">{low + fraction * span:.2f}</text>')
    parts.append(f'<text x="{(width + left) / 2}" y="{height - 3}" font-size="11" '
                 'text-anchor="middle">mean answer-token loss (nats)</text></svg>')
    legend = ('<div class="legend"><span style="background:#2e8b57"></span>kept '
              f'({sum(kept)})<span style="background:#c0504d"></span>dropped ({sum(dropped)})'
              '</div>')
    return "".join(parts) + legend


def thumbnail(path: Path, side: int) -> str | None:
    """A base64 JPEG data URL of the image shrunk to `side`, or None when unreadable."""
    try:
        image = open_image(path, max_side=side)
    except ImageError:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _metric(value, label: str) -> str:
    return (f'<div class="metric"><b>{html.escape(str(value))}</b>'
            f'<span>{html.escape(label)}</span></div>')


def summary_html(inputs: dict, totals: list) -> str:
    """Headline numbers: the funnel totals and the cost."""
    cost = (inputs["stats"].get("generate") or {}).get("cost_usd")
    labels = ["reference samples", "candidate images", "prompts", "ok", "failed", "samples",
              "removed by checks", "kept"]
    metrics = [_metric(value, label) for value, label in zip(totals[1:], labels)]
    if cost is not None:
        metrics.append(_metric(f"${cost:,.4f}", "generation cost"))
    for label, entry in (inputs.get("accuracy") or {}).items():
        if entry:
            metrics.append(_metric(accuracy_text(entry), f"{label} model {entry['metric']} "
                                   f"(95% CI, {entry['count']} eval questions)"))
    return "".join(metrics)


def failures_html(inputs: dict) -> str:
    """Failed requests by error class, with their share and one example message."""
    generations = inputs["generations"]
    failed = [r for r in generations.values() if r["status"] == "failed"]
    if not generations:
        return "<p class='note'>No generations log.</p>"
    if not failed:
        return f"<p>No failed requests out of {len(generations)}.</p>"
    counts = Counter(r.get("error_class") or "unknown" for r in failed)
    example = {}
    for record in failed:
        error_class = record.get("error_class") or "unknown"
        example.setdefault(error_class, (record.get("error") or "")[:140])
    rows = [[cls, n, f"{n / len(generations):.1%}", example[cls]]
            for cls, n in counts.most_common()]
    return table(["error class", "failed", "share of requests", "example"], rows,
                 ["total", len(failed), f"{len(failed) / len(generations):.1%}", ""],
                 text_columns=(0, 3))


def tokens_html(inputs: dict) -> str:
    """Prompt and completion tokens summed over the generations log, and the cost."""
    usage = Counter()
    models = Counter()
    for record in inputs["generations"].values():
        for key, value in (record.get("usage") or {}).items():
            if isinstance(value, (int, float)):
                usage[key] += value
        models[record.get("model") or "?"] += 1
    generate = inputs["stats"].get("generate") or {}
    rows = [["prompt tokens", f"{usage['prompt_tokens']:,}"],
            ["completion tokens", f"{usage['completion_tokens']:,}"],
            ["total tokens", f"{usage['prompt_tokens'] + usage['completion_tokens']:,}"]]
    if generate.get("cost_usd") is not None:
        rows.append(["cost (USD)", f"${generate['cost_usd']:,.4f}"])
    rows += [[f"model {name}", f"{n} requests"] for name, n in models.most_common()]
    return table(["", "value"], rows)


def filter_html(inputs: dict) -> str:
    """What the filter removed, per check, and the loss means of kept vs dropped."""
    stats = inputs["stats"].get("filter") or {}
    if not stats:
        return "<p class='note'>The filter has not run.</p>"
    rows = [[f"removed: {name}", n] for name, n in (stats.get("removed") or {}).items()]
    rows += [["scored", stats.get("scored")], ["kept", stats.get("kept")],
             ["dropped by score", stats.get("dropped_by_score")],
             ["mean loss kept", stats.get("mean_loss_kept")],
             ["mean loss dropped", stats.get("mean_loss_dropped")],
             ["selection", f"{stats.get('select')} {stats.get('keep_fraction')}"],
             ["scorer", stats.get("scorer")]]
    return table(["", "value"], rows)


def stages_html(inputs: dict) -> str:
    """Wall time of every stage that recorded one in stats.json."""
    rows = [[stage, f"{section['wall_s']:.2f}"] for stage, section in inputs["stats"].items()
            if isinstance(section, dict) and "wall_s" in section]
    return table(["stage", "wall time (s)"], rows) if rows else "<p class='note'>No timings.</p>"


def _icl_html(indices: list, task: dict | None, image_root: Path, styles: dict) -> str:
    if not task or not indices:
        return ""
    parts = []
    for index in indices:
        if not 0 <= index < len(task["samples"]):
            continue
        example = task["samples"][index]
        if index not in styles:
            url = thumbnail(image_root / sample_image_path(task, example), ICL_THUMB_SIDE)
            styles[index] = f".ref-{index} {{ background-image: url({url}); }}" if url else ""
        question, answer = question_and_answer(example)
        parts.append(f'<div class="icl"><div class="thumb ref-{index}"></div><div>'
                     f'<p class="q">{html.escape(IMAGE_TAG.sub("", question).strip())}</p>'
                     f'<p class="a">{html.escape(answer)}</p></div></div>')
    return (f"<details><summary>In-context examples ({len(parts)})</summary>{''.join(parts)}"
            "</details>") if parts else ""


def gallery_html(cfg: DictConfig, inputs: dict,
                 chosen: list[tuple[dict, dict]]) -> tuple[str, str, str]:
    """Gallery cards, the CSS rules holding in-context thumbnails, and a note on the selection."""
    data = inputs["data"] or {}
    image_root = Path(data.get("image_folder") or cfg.dataset.root)
    icl_of_prompt = {p["id"]: p.get("icl_indices") for p in inputs["prompts"]}
    styles: dict[int, str] = {}
    cards = []
    for sample, score in chosen:
        question, answer = question_and_answer(sample)
        image = ""
        if sample.get("image_1"):
            url = thumbnail(image_root / sample["image_1"], cfg.report.thumbnail_side)
            image = (f'<img src="{url}" alt="{html.escape(sample["image_1"])}">' if url
                     else f"<p class='note'>image {html.escape(sample['image_1'])} unreadable</p>")
        indices = sample.get("icl_indices") or icl_of_prompt.get(sample.get("prompt_id")) or []
        kept = bool(score["kept"])
        cards.append(
            f'<div class="card{" kept" if kept else ""}">{image}'
            f'<div class="meta"><span>{html.escape(sample.get("keyword") or "?")}</span>'
            f'<span>loss {score["score"]:.3f} <span class="badge">{"kept" if kept else "dropped"}'
            f'</span></span></div>'
            f'<p class="q">{html.escape(IMAGE_TAG.sub("", question).strip())}</p>'
            f'<p class="a">{html.escape(answer)}</p>'
            f'{_icl_html(indices, inputs["task"], Path(cfg.dataset.root), styles)}</div>')
    note = (f"{len(cards)} samples: up to {cfg.report.gallery_per_subgroup} per subgroup, evenly "
            "spread from the highest loss to the lowest. Green = kept by the filter, "
            "red = dropped.")
    return "".join(cards), "\n".join(s for s in styles.values() if s), note
