"""A user's own experiment, kept in a folder outside the package, reached by Hydra's search path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR, compose_config
from hydra.errors import ConfigCompositionException

# what a user writes in my_conf/experiment/: the packaged demo, three in-context examples, fewer items
USER_EXPERIMENT = """\
# @package _global_
# Run: python -m mmgen.pipeline +experiment=my_charts hydra.searchpath=[file://my_conf]
defaults:
  - /experiment/demo          # start from the packaged offline demo
  - override /icl: "3"        # three in-context examples per prompt

name: my_charts               # outputs land in outputs/my_charts/
total_gen: 24                 # generated items wanted
"""


def user_conf(folder: Path) -> Path:
    """A config folder of the user's, holding one experiment and nothing else."""
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "my_charts.yaml").write_text(USER_EXPERIMENT)
    return folder


def test_user_experiment_composes_over_the_packaged_groups(tmp_path):
    conf = user_conf(tmp_path / "my_conf")
    cfg = compose_config(["+experiment=my_charts", f"hydra.searchpath=[file://{conf}]"])
    assert (cfg.name, cfg.total_gen, cfg.icl.num_examples) == ("my_charts", 24, 3)
    assert cfg.dataset.name == "demo" and cfg.caps_per_image.num_captions == 3  # from the demo
    assert cfg.hydra.run.dir == "outputs/my_charts"


def user_dataset(conf: Path, extra: str = "") -> None:
    """my_conf/dataset/my_charts.yaml: the packaged demo domain under the user's own name."""
    packaged = (Path(CONF_DIR) / "dataset" / "demo.yaml").read_text()
    (conf / "dataset").mkdir()
    (conf / "dataset" / "my_charts.yaml").write_text(
        packaged.replace("name: demo", "name: my_charts", 1) + extra)


def test_user_group_option_composes_and_is_checked_against_the_schema(tmp_path):
    def compose_with(conf: Path):
        return compose_config(["+experiment=my_charts", "dataset=my_charts",
                               f"hydra.searchpath=[file://{conf}]"])

    good = user_conf(tmp_path / "good")
    user_dataset(good)
    assert compose_with(good).dataset.name == "my_charts"
    typo = user_conf(tmp_path / "typo")
    user_dataset(typo, extra="keywrods: [bar chart]\n")
    with pytest.raises(ConfigCompositionException, match="Key 'keywrods' not in") as caught:
        compose_with(typo)
    assert "dataset/my_charts" in str(caught.value)  # names the user's file


def test_user_experiment_runs_from_its_own_folder(tmp_path, demo_root):
    work = tmp_path / "work"  # the user's folder: their conf beside it, nothing of the package
    conf = user_conf(work / "my_conf")
    done = subprocess.run(
        [sys.executable, "-m", "mmgen.prompts", "+experiment=my_charts",
         f"hydra.searchpath=[file://{conf}]", f"dataset.root={demo_root}",
         f"paths.cache_dir={tmp_path / 'cache'}"],
        cwd=work, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(work / "outputs" / "my_charts" / "prompts.jsonl", encoding="utf-8") as handle:
        prompts = [json.loads(line) for line in handle]
    assert len(prompts) >= 24 // 3  # 3 items per prompt, at least one prompt per candidate share
    assert all(len(prompt["icl_indices"]) == 3 for prompt in prompts)
    overrides = (work / "outputs" / "my_charts" / ".hydra" / "overrides.yaml").read_text()
    assert "+experiment=my_charts" in overrides
