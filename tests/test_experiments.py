"""Every experiment composes and matches the seed's command list; sweeps run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR, compose_config
from test_prompts import make_task

EXPERIMENT_DIR = Path(CONF_DIR) / "experiment"
REPO = Path(CONF_DIR).parent
# the issue's table: experiment -> (dataset, mode, total_gen, other settings)
TABLE = {
    "chartqa_mmgen": ("chartqa", "vqa_nr", 150000, {}),
    "chartqa_vqa_task_desc": ("chartqa", "vqa_task_desc", 150000, {}),
    "chartqa_descript_task_desc": ("chartqa", "descript_task_desc", 150000, {}),
    "chartqa_no_partition": ("chartqa", "vqa_nr", 150000, {"refset.name": "no_partition"}),
    "chartqa_imbalanced_refset": ("chartqa", "vqa_nr", 150000, {"refset.name": "imbalanced"}),
    "chartqa_3icl": ("chartqa", "vqa_nr", 150000, {"icl.num_examples": 3}),
    "chartqa_5icl": ("chartqa", "vqa_nr", 150000, {"icl.num_examples": 5}),
    "chartqa_1cap": ("chartqa", "vqa_nr", 28299, {"caps_per_image.num_captions": 1}),
    "chartqa_3cap": ("chartqa", "vqa_nr", 28299, {"caps_per_image.num_captions": 3}),
    "chartqa_5cap": ("chartqa", "vqa_nr", 28299, {"caps_per_image.num_captions": 5}),
    "chartqa_small_refset": ("chartqa", "vqa_nr", 150000, {"refset.name": "small"}),
    "ai2d_mmgen": ("ai2d", "vqa_nr", 100000, {}),
    "ai2d_vqa_task_desc": ("ai2d", "vqa_task_desc", 100000, {}),
    "ai2d_descript_task_desc": ("ai2d", "descript_task_desc", 100000, {}),
    "spatial_map_mmgen": ("spatial_map", "vqa_nr", 15000, {}),
    "spatial_map_generic": ("spatial_map", "generic", 15000, {}),
    "spatial_map_vqa_task_desc": ("spatial_map", "vqa_task_desc", 50000, {}),
    "spatial_map_descript_task_desc": ("spatial_map", "descript_task_desc", 50000, {}),
    "demo": ("demo", "vqa_nr", None, {}),
}
EXPERIMENTS = sorted(path.stem for path in EXPERIMENT_DIR.glob("*.yaml")
                     if "_table_" not in path.stem)
TABLE_ROWS = ["base", "generic", "task_captions", "task_questions", "prefilter", "mmgen",
              "skyline"]  # the paper's results table, one experiment per row and dataset


def test_the_catalogue_is_the_issues_table():
    assert set(EXPERIMENTS) == set(TABLE)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name):
    cfg = compose_config([f"+experiment={name}"])
    dataset, mode, total_gen, other = TABLE[name]
    assert cfg.name == name
    assert (cfg.dataset.name, cfg.mode.name) == (dataset, mode)
    if total_gen is not None:
        assert cfg.total_gen == total_gen
    for key, value in other.items():
        assert cfg[key.split(".")[0]][key.split(".")[1]] == value, key
    header = (EXPERIMENT_DIR / f"{name}.yaml").read_text().splitlines()
    assert header[0] == "# @package _global_"
    assert f"# Run: python -m mmgen.pipeline +experiment={name}" in header


@pytest.mark.parametrize("dataset", ["demo", "chartqa", "ai2d", "spatial_map"])
def test_the_paper_table_is_one_experiment_per_row_listing_only_its_differences(dataset):
    from mmgen.results import paper_figures

    rows = {row: compose_config([f"+experiment={dataset}_table_{row}"]) for row in TABLE_ROWS}
    start = compose_config([f"+experiment={'demo' if dataset == 'demo' else dataset + '_mmgen'}"])
    assert rows["base"].evaluate.model == "base" and rows["mmgen"].evaluate.model == "trained"
    assert rows["mmgen"].train.data == "filtered" and rows["skyline"].train.data == "skyline"
    assert [rows[r].train.data for r in ("generic", "task_captions", "task_questions",
                                         "prefilter")] == ["unfiltered"] * 4
    assert [rows[r].mode.name for r in ("generic", "task_captions", "task_questions", "mmgen")] \
        == ["generic", "descript_task_desc", "vqa_task_desc", "vqa_nr"]
    assert (rows["mmgen"].dataset, rows["mmgen"].backend) == (start.dataset, start.backend)
    figures = paper_figures()
    for row, cfg in rows.items():
        text = (EXPERIMENT_DIR / f"{dataset}_table_{row}.yaml").read_text()
        assert len([line for line in text.splitlines() if line and line[0] not in "# "]) <= 4
        if dataset != "demo":
            task, _, name = cfg.evaluate.paper_row.partition(": ")
            assert (task, name) in figures, cfg.evaluate.paper_row
    if dataset == "demo":
        assert compose_config(["+experiment=demo_table_random_retrieval"]).retrieval.name == \
            "random"


def test_demo_quotas_fit_the_demo_domain():
    cfg = compose_config(["+experiment=demo"])
    references = {"bar chart": 30, "line chart": 24, "pie chart": 18}  # about, per kind
    total = sum(references.values())
    images = cfg.total_gen / cfg.caps_per_image.num_captions
    for count in references.values():
        assert images * count / total <= 50  # the demo pool has 50+ images per chart kind
    prompts = sum(-(-cfg.total_gen * c // (total * cfg.min_gen_per_candidate))
                  for c in references.values())
    assert prompts * cfg.min_gen_per_candidate >= 200  # >= 100 samples even after a 50% filter


def test_a_command_line_choice_beats_the_experiments():
    assert compose_config(["+experiment=chartqa_5icl", "icl='1'"]).icl.num_examples == 1


def run_app(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run([sys.executable, "-m", "mmgen.prompts", *args], cwd=cwd, env=env,
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def job_results(sweep_dir: Path) -> dict[str, list[dict]]:
    """Each job's overrides (as one string) -> its prompt records."""
    results = {}
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        lines = overrides_file.read_text().splitlines()
        key = " ".join(line[2:].replace("'", "") for line in lines
                       if line.startswith("- ") and line[2:].split("=")[0] in ("icl", "+experiment"))
        with open(job_dir / "prompts.jsonl", encoding="utf-8") as handle:
            results[key] = [json.loads(line) for line in handle]
    return results


def test_icl_sweep_runs_one_job_per_choice(tmp_path):
    task_path = make_task(tmp_path, [6, 5, 5], candidates=4)
    run_app("-m", "icl=1,3,5", "dataset=chartqa", "dataset.source=null", "dataset.eval=null",
            f"task_file={task_path}", "total_gen=8", "check_images=false",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=${hydra.job.num}",
            f"paths.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    results = job_results(tmp_path / "sweep")
    assert sorted(results) == ["icl=1", "icl=3", "icl=5"]
    for key, records in results.items():
        examples = int(key.split("=")[1])
        assert records and all(len(r["icl_indices"]) == examples for r in records)


@pytest.mark.slow
def test_glob_sweep_runs_every_chartqa_experiment(tmp_path):
    task_path = make_task(tmp_path, [6, 5, 5], candidates=4)
    run_app("-m", "+experiment=glob(chartqa_*,exclude=chartqa_table_*)", f"task_file={task_path}",
            "total_gen=30", "dataset.eval=null",
            "check_images=false", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "hydra.sweep.subdir=${hydra.job.num}", f"paths.cache_dir={tmp_path / 'cache'}",
            cwd=tmp_path)
    results = job_results(tmp_path / "sweep")
    chartqa = [name for name in EXPERIMENTS if name.startswith("chartqa_")]
    assert sorted(results) == sorted(f"+experiment={name}" for name in chartqa)
    for key, records in results.items():
        name = key.split("=")[1]
        mode, other = TABLE[name][1], TABLE[name][3]
        assert len(records) >= 30
        expected = 0 if mode != "vqa_nr" else other.get("icl.num_examples", 1)
        assert all(len(r["icl_indices"]) == expected for r in records), name


def test_sweep_scripts_name_only_existing_experiments():
    scripts = list((REPO / "experiments").glob("*.sh"))
    assert scripts
    named = set()
    for script in scripts:
        names = re.findall(r"\b(?:chartqa|ai2d|spatial_map)_\w+", script.read_text())
        assert set(names) <= set(EXPERIMENTS), script.name
        named.update(names)
    seed_script = (REPO / "experiments" / "seed_commands.sh").read_text()
    seed_runs = [name for name in EXPERIMENTS
                 if name not in ("chartqa_mmgen", "chartqa_small_refset", "ai2d_mmgen", "demo")]
    assert all(name in seed_script for name in seed_runs)  # the seed README's 15 commands
