"""The schema is the single source of truth: closed choices and ranges fail before any work,
every default lives in one place, and refactoring the config tree changed no experiment."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR, compose_config
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf

from mmgen.schema import Config

SNAPSHOT = Path(__file__).parent / "data" / "composed_experiments.json"
# values changed on purpose since the snapshot -> the value now, and why
CHANGED_ON_PURPOSE = {  # key -> (its new value, why)
    "dataset.eval": ("eval.json", "mmgen.prepare writes the benchmark's eval set"),
    "filter.scorer._target_": ("mmgen.demo.scorer.DemoTargetScorer",
                               "the demo's scorer moved into mmgen/demo (core never names it)"),
}
EXPERIMENTS = sorted(path.stem for path in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
CLOSED_CHOICES = {
    "refset.name": "tiny", "filter.select": "middle", "export.format": "xml",
    "backend.name": "gpt5", "generate.image_format": "gif", "generate.image_detail": "ultra",
    "filter.device": "tpu", "clip.device": "tpu", "filter.scorer.dtype": "int4",
}


@pytest.mark.parametrize("key,bad", sorted(CLOSED_CHOICES.items()))
def test_a_bad_closed_choice_fails_at_compose_time_naming_the_key(key, bad):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config([f"{key}={bad}"])
    message = str(caught.value) + str(caught.value.__cause__)
    assert key.split(".")[-1] in message and bad in message


@pytest.mark.parametrize("override,key", [
    ("total_gen=0", "total_gen"), ("min_gen_per_candidate=-1", "min_gen_per_candidate"),
    ("filter.keep_fraction=1.5", "filter.keep_fraction"),
    ("filter.keep_fraction=0", "filter.keep_fraction"), ("icl.max_turn_chars=0", "icl.max_turn_chars"),
    ("generate.jpeg_quality=500", "generate.jpeg_quality"),
    ("shard.index=2", "shard.index")])
def test_an_out_of_range_value_fails_before_any_stage(tmp_path, override, key):
    from mmgen import runner

    cfg = compose_config(["+experiment=demo", override], tmp_path / "out")
    with pytest.raises(ValueError, match=key):
        runner.run(cfg, "report")
    assert not (tmp_path / "out" / "task.json").exists()


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, path + (key,))
    else:
        yield path, node


def _lookup(node, path):
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return "<absent>"
        node = node[key]
    return node


@pytest.mark.parametrize("name", sorted(json.loads(SNAPSHOT.read_text())))
def test_every_experiment_composes_to_the_values_it_had_before_the_refactor(name):
    before = json.loads(SNAPSHOT.read_text())[name]
    now = OmegaConf.to_container(compose_config([f"+experiment={name}"]), resolve=True,
                                 enum_to_str=True)
    changed = {".".join(path): (value, _lookup(now, path)) for path, value in _leaves(before)
               if _lookup(now, path) != value
               and _lookup(now, path) != CHANGED_ON_PURPOSE.get(".".join(path), ("<none>",))[0]}
    assert not changed


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_resolves_without_a_run(name):
    cfg = compose_config([f"+experiment={name}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["paths"]["out_dir"] == f"outputs/{name}"


def test_cfg_job_resolve_prints_the_config(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mmgen.generate", "+experiment=chartqa_5icl",
                           "--cfg", "job", "--resolve"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = yaml.safe_load(done.stdout)
    assert printed["paths"]["out_dir"] == "outputs/chartqa_5icl"
    assert printed["icl"]["num_examples"] == 5


def _option_keys(group: str, option: str) -> set[str]:
    data = yaml.safe_load((Path(CONF_DIR) / group / f"{option}.yaml").read_text()) or {}
    keys = {key for key in data if key != "defaults"}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_":
            keys |= _option_keys(group, entry)
    return keys


def test_a_key_every_option_of_a_group_sets_has_no_second_default_in_the_schema():
    doubled = []
    for group_field in dataclasses.fields(Config):
        folder = Path(CONF_DIR) / group_field.name
        if group_field.default_factory is dataclasses.MISSING or not folder.is_dir():
            continue
        options = [path.stem for path in folder.glob("*.yaml") if path.stem != "base"]
        set_by_all = set.intersection(*(_option_keys(group_field.name, o) for o in options))
        schema = group_field.default_factory()
        for key_field in dataclasses.fields(schema):
            default = key_field.default
            if key_field.default_factory is not dataclasses.MISSING:
                default = key_field.default_factory()
                if dataclasses.is_dataclass(default):
                    continue  # a nested group: its own keys are checked by its YAML
            if key_field.name in set_by_all and default not in (MISSING, dataclasses.MISSING):
                doubled.append(f"{group_field.name}.{key_field.name}")
    assert not doubled
