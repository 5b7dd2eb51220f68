"""Collect the eval results of runs into one table: printed, and written as results.md and .csv.

    python -m mmgen.results outputs/multirun/demo_table          # every run below a sweep folder
    python -m mmgen.results outputs/demo_base outputs/demo [--out DIR]

Each DIR is a run folder (it holds eval/metrics.json) or a folder searched for run folders.
A row shows the accuracy with its 95% CI and count, each split and reported variant, the number
of training samples, the paper's figure for the row its config names in `evaluate.paper_row`
("TASK: ROW" of mmgen/paper_results.jsonl, the project's copy of the paper's table), and what its
config changes against the first row's (mmgen.diff). Rows follow the paper's table order where
they map to it, then the rest in the order found. The files go to --out, by default the one DIR
given (or the current directory for several).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mmgen.contracts import read_json
from mmgen.diff import differences, show
from mmgen.errors import UserError
from mmgen.metrics import accuracy_text

PAPER_RESULTS = Path(__file__).with_name("paper_results.jsonl")
METRICS_PATH = Path("eval") / "metrics.json"
# keys that say where or how fast a run went, or label it, never what it computed
UNCOMPARED_PREFIXES = ("name", "paths.", "hydra.", "evaluate.paper_row", "evaluate.progress",
                       "evaluate.batch_size", "evaluate.device", "generate.progress",
                       "train.progress", "train.device")
MAX_CHANGES, MAX_VALUE_CHARS = 6, 40


@dataclass
class Row:
    name: str
    folder: Path
    metrics: dict
    config: dict | None  # the run's composed config (.hydra/config.yaml), if kept
    train_samples: int | None
    paper: dict | None  # the paper's record this row reproduces
    changes: str = ""


def find_runs(folders: list[Path]) -> list[Path]:
    """Run folders: each DIR that holds eval/metrics.json, else those found below it."""
    runs: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder")
        found = [folder] if (folder / METRICS_PATH).is_file() else sorted(
            path.parent.parent for path in folder.rglob(str(METRICS_PATH))
            if ".cache" not in path.relative_to(folder).parts)
        if not found:
            raise UserError(f"{folder}: no {METRICS_PATH} in it or below it; run "
                            "python -m mmgen.evaluate +experiment=NAME first")
        runs += [run for run in found if run not in runs]
    return runs


def run_config(folder: Path) -> dict | None:
    """The run's config as Hydra saved it, interpolations resolved where they can be."""
    path = folder / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    import mmgen.stage  # noqa: F401  (registers the resolvers the saved config uses)

    config = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException:  # a resolver only a live run has: compare the raw text
        return OmegaConf.to_container(config, resolve=False)


def paper_figures() -> dict[tuple[str, str], dict]:
    """The paper's results, keyed by (task, row name), in the paper's order."""
    with PAPER_RESULTS.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return {(record["task"], record["name"]): record for record in records}


def paper_record(config: dict | None, folder: Path, figures: dict) -> dict | None:
    """The paper's record named by the run's evaluate.paper_row ("TASK: ROW"), if any."""
    label = ((config or {}).get("evaluate") or {}).get("paper_row")
    if not label:
        return None
    task, _, name = (part.strip() for part in label.partition(":"))
    if (task, name) not in figures:
        known = [f"{t}: {n}" for t, n in figures if t == task] or sorted({t for t, _ in figures})
        raise UserError(f"{folder}: evaluate.paper_row '{label}' is not in {PAPER_RESULTS.name}; "
                        f"choose one of: {'; '.join(known)}")
    return figures[(task, name)]


def training_samples(folder: Path, metrics: dict) -> int | None:
    """How many samples the evaluated model was trained on: 0 for the base model."""
    if metrics.get("evaluated") == "base":
        return 0
    stats_path = folder / "stats.json"
    stats = read_json(stats_path) if stats_path.is_file() else {}
    return (stats.get("train") or {}).get("samples")


def config_changes(first: dict | None, config: dict | None) -> str:
    """`key=value` for each compared key the config sets differently from the first row's."""
    if first is None or config is None:
        return "" if first is config else "(no saved config)"
    rows = [(key, value) for key, _, value in differences(first, config)
            if not key.startswith(UNCOMPARED_PREFIXES)]
    shown = []
    for key, value in rows[:MAX_CHANGES]:
        text = " ".join(show(value).split())
        shown.append(f"{key}={text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 3] + '...'}")
    more = len(rows) - MAX_CHANGES
    return ", ".join(shown) + (f", +{more} more" if more > 0 else "")


def collect(folders: list[Path]) -> list[Row]:
    """One row per run, in the paper's order where rows map to it, each with its changes."""
    figures = paper_figures()
    order = {key: index for index, key in enumerate(figures)}
    rows = []
    for folder in find_runs(folders):
        metrics, config = read_json(folder / METRICS_PATH), run_config(folder)
        rows.append(Row(name=(config or {}).get("name") or folder.name, folder=folder,
                        metrics=metrics, config=config,
                        train_samples=training_samples(folder, metrics),
                        paper=paper_record(config, folder, figures)))
    rows.sort(key=lambda row: order[(row.paper["task"], row.paper["name"])] if row.paper
              else len(order))
    if len({row.name for row in rows}) < len(rows):  # e.g. one experiment swept over a key
        for row in rows:
            row.name = str(row.folder)
    for row in rows:
        row.changes = config_changes(rows[0].config, row.config)
    return rows


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: accuracy [CI], count, splits, variants, training samples, paper, changes."""
    splits = sorted({name for row in rows for name in row.metrics.get("splits", {})})
    variants = sorted({name for row in rows for name in row.metrics.get("variants", {})})
    metric_names = sorted({row.metrics["metric"] for row in rows})
    header = (["run", f"{' / '.join(metric_names)} [95% CI]", "n"] + splits + variants
              + ["train samples", "paper", "changes vs first row"])
    cells = []
    for row in rows:
        paper = (f"{row.paper['accuracy']:.3f} ({row.paper['task']}: {row.paper['name']})"
                 if row.paper else "")
        cells.append([row.name, accuracy_text(row.metrics), str(row.metrics["count"])]
                     + [accuracy_text(row.metrics.get("splits", {}).get(name)) for name in splits]
                     + [accuracy_text(row.metrics.get("variants", {}).get(name)) for name in variants]
                     + ["" if row.train_samples is None else str(row.train_samples), paper,
                        row.changes])
    return header, cells


def markdown(header: list[str], cells: list[list[str]]) -> str:
    """A Markdown table (pipes in cells escaped)."""
    def line(values: list[str]) -> str:
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    return "\n".join([line(header), line(["---"] * len(header))] + [line(c) for c in cells])


def write(rows: list[Row], out: Path) -> tuple[Path, Path]:
    """results.md and results.csv in `out`."""
    header, cells = table(rows)
    out.mkdir(parents=True, exist_ok=True)
    markdown_path, csv_path = out / "results.md", out / "results.csv"
    markdown_path.write_text(markdown(header, cells) + "\n", encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["folder", "metric", "ci95_low", "ci95_high", "paper_accuracy"] + header)
    for row, row_cells in zip(rows, cells):
        writer.writerow([row.folder, row.metrics["metric"], *row.metrics["ci95"],
                         row.paper["accuracy"] if row.paper else "", *row_cells])
    csv_path.write_text(buffer.getvalue(), encoding="utf-8")
    return markdown_path, csv_path


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table and write results.md / results.csv."""
    parser = argparse.ArgumentParser(prog="python -m mmgen.results",
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run folders or sweep folders")
    parser.add_argument("--out", type=Path, default=None,
                        help="where results.md and results.csv go (default: the one DIR given, "
                             "else the current directory)")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.dirs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or (args.dirs[0] if len(args.dirs) == 1 else Path.cwd())
    markdown_path, csv_path = write(rows, out)
    print(markdown(*table(rows)))
    print(f"\n{len(rows)} runs; wrote {markdown_path} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
