"""python -m mmgen.results: one table from run folders or a sweep folder."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from mmgen import results


def fake_run(folder: Path, name: str, accuracy: float, config: dict | None = None,
             evaluated: str = "trained", train_samples: int | None = None,
             splits: bool = True) -> Path:
    """A run folder as evaluate, train and Hydra leave it."""
    entry = {"accuracy": accuracy, "correct": round(accuracy * 100), "count": 100,
             "ci95": [round(accuracy - 0.09, 4), round(accuracy + 0.09, 4)]}
    metrics = {"metric": "relaxed_accuracy", **entry,
               "variants": {"relaxed_accuracy_loose": {**entry, "accuracy": accuracy + 0.05}},
               "evaluated": evaluated, "model": "demo"}
    if splits:
        metrics["splits"] = {"augmented": {**entry, "accuracy": accuracy + 0.02},
                             "human": {**entry, "accuracy": accuracy - 0.02}}
    (folder / "eval").mkdir(parents=True)
    (folder / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (folder / ".hydra").mkdir()
    base_config = {"name": name, "paths": {"out_dir": str(folder)}, "mode": {"name": "vqa_nr"},
                   "train": {"data": "filtered", "lr": 0.001},
                   "evaluate": {"model": evaluated, "paper_row": None, "progress": True}}
    for key, value in (config or {}).items():  # "a.b": value
        node = base_config
        *parents, last = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(base_config))
    if train_samples is not None:
        (folder / "stats.json").write_text(json.dumps({"train": {"samples": train_samples}}))
    return folder


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun" / "demo_table"
    fake_run(root / "+experiment=demo_mmgen", "demo_mmgen", 0.41, train_samples=120,
             config={"evaluate.paper_row": "ChartQA: MM-Gen (75K)"})
    fake_run(root / "+experiment=demo_base", "demo_base", 0.12, evaluated="base",
             config={"evaluate.paper_row": "ChartQA: Base Model"})
    fake_run(root / "+experiment=demo_generic", "demo_generic", 0.18, train_samples=240,
             config={"mode.name": "generic", "train.data": "unfiltered",
                      "evaluate.paper_row": "ChartQA: Generic Caption (150K)",
                      "evaluate.progress": False})
    fake_run(root / "+experiment=demo_random", "demo_random", 0.3, train_samples=120,
             config={"retrieval": {"name": "random"}})
    (root / ".cache" / "x" / "eval").mkdir(parents=True)  # the shared cache is never a run
    (root / ".cache" / "x" / "eval" / "metrics.json").write_text("{}")
    return root


def test_sweep_folder_becomes_one_table_in_the_papers_order(sweep, capsys):
    assert results.main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("| demo")]
    assert [line.split(" | ")[0] for line in lines] == [
        "| demo_base", "| demo_generic", "| demo_mmgen", "| demo_random"]
    base, generic, mmgen, random_row = (line.split(" | ") for line in lines)
    assert base[1] == "0.120 [0.030, 0.210]" and base[2] == "100"
    assert base[3:5] == ["0.140 [0.030, 0.210]", "0.100 [0.030, 0.210]"]  # augmented, human
    assert base[5] == "0.170 [0.030, 0.210]"  # the loose variant beside it
    assert base[6] == "0"  # the base model saw no training samples
    assert base[7] == "0.182 (ChartQA: Base Model)"
    assert mmgen[6] == "120" and mmgen[7] == "0.329 (ChartQA: MM-Gen (75K))"
    # changes against the first row; labels, paths and speed-only keys are left out
    assert generic[8].rstrip(" |") == ("evaluate.model=trained, mode.name=generic, "
                                       "train.data=unfiltered")
    assert random_row[7] == ""  # maps to no paper row
    assert random_row[8].rstrip(" |") == "evaluate.model=trained, retrieval.name=random"
    assert "4 runs; wrote" in printed
    written = (sweep / "results.md").read_text()
    assert written.splitlines()[2].startswith("| demo_base | 0.120")
    with (sweep / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == ["demo_base", "demo_generic", "demo_mmgen",
                                             "demo_random"]
    assert rows[2]["paper_accuracy"] == "0.3292" and rows[2]["ci95_low"] == "0.32"
    assert rows[2]["train samples"] == "120"


def test_run_folders_given_one_by_one(tmp_path, capsys):
    first = fake_run(tmp_path / "a", "chartqa_base", 0.2, evaluated="base", splits=False)
    second = fake_run(tmp_path / "b", "chartqa_5icl", 0.3, config={"icl": {"num_examples": 5}})
    out = tmp_path / "table"
    assert results.main([str(first), str(second), "--out", str(out)]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| chartqa")]
    assert rows[0][0] == "| chartqa_base" and rows[0][3] == ""  # no split columns filled
    assert rows[1][-1].rstrip(" |") == "evaluate.model=trained, icl.num_examples=5"
    assert (out / "results.md").is_file() and (out / "results.csv").is_file()


def test_same_experiment_swept_rows_are_named_by_folder(tmp_path):
    fake_run(tmp_path / "seed=0", "demo", 0.3)
    fake_run(tmp_path / "seed=1", "demo", 0.35)
    names = [row.name for row in results.collect([tmp_path])]
    assert names == [str(tmp_path / "seed=0"), str(tmp_path / "seed=1")]


def test_unknown_paper_row_and_empty_folder_are_named(tmp_path, capsys):
    fake_run(tmp_path / "run", "x", 0.3, config={"evaluate.paper_row": "ChartQA: MM-Gen (1M)"})
    assert results.main([str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "evaluate.paper_row 'ChartQA: MM-Gen (1M)'" in error
    assert "ChartQA: MM-Gen (75K)" in error  # the rows it could be
    (tmp_path / "empty").mkdir()
    assert results.main([str(tmp_path / "empty")]) == 2
    assert "no eval/metrics.json in it or below it" in capsys.readouterr().err


def test_project_keeps_its_own_copy_of_the_paper_figures():
    figures = results.paper_figures()
    assert figures[("ChartQA", "Base Model")]["accuracy"] == 0.1824
    assert figures[("SpatialMap", "MM-Gen (25K)")]["accuracy"] == 0.554
    assert figures[("AI2D", "MM-Gen (50K)")]["accuracy"] == pytest.approx(0.688, abs=1e-3)
