"""Config tree: composes, fails at compose time naming the key, and places outputs stably."""
import pytest
from conftest import compose_config
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mmgen.stage import _quote_numeric_choice


def test_default_config_composes_with_every_group():
    cfg = compose_config()
    for group in ["paths", "dataset", "clip", "refset", "retrieval", "caps_per_image", "mode",
                  "icl", "backend", "generate", "filter", "export"]:
        assert group in cfg, group
    assert cfg.dataset.name == "demo"
    assert cfg.paths.out_dir == "outputs/default"


@pytest.mark.parametrize("dataset", ["demo", "chartqa", "ai2d", "spatial_map"])
def test_dataset_options_compose(dataset):
    cfg = compose_config([f"dataset={dataset}"])
    assert cfg.dataset.name == dataset
    assert cfg.dataset.keywords and cfg.dataset.description


@pytest.mark.parametrize("override, key", [
    ("dataset.rooot=x", "dataset.rooot"),
    ("totl_gen=5", "totl_gen"),
])
def test_typo_fails_at_compose_time_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException, match=key.replace(".", r"\.")):
        compose_config([override])


def test_bad_value_fails_at_compose_time_naming_the_key():
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config(["total_gen=lots"])
    assert "total_gen" in str(caught.value) + str(caught.value.__cause__)


def test_experiment_run_dir_is_named_after_it_and_stable():
    first = compose_config(["+experiment=demo"])
    second = compose_config(["+experiment=demo"])
    assert first.paths.out_dir == second.paths.out_dir == "outputs/demo"


def test_multirun_job_dir_is_sweep_dir_plus_override_dirname():
    cfg = compose_config(["+experiment=demo", _quote_numeric_choice("icl=3")])
    assert cfg.icl.num_examples == 3
    assert cfg.hydra.sweep.dir == "outputs/multirun/demo"
    assert cfg.hydra.sweep.subdir == "+experiment=demo,icl=3"


@pytest.mark.parametrize("arg, expected", [
    ("icl=3", "icl='3'"),
    ("icl=1,3,5", "icl='1','3','5'"),
    ("caps_per_image=5", "caps_per_image='5'"),
    ("+icl=3", "+icl='3'"),
    ("icl.num_examples=3", "icl.num_examples=3"),
    ("total_gen=3", "total_gen=3"),
])
def test_numeric_group_choices_are_quoted_for_hydra(arg, expected):
    assert _quote_numeric_choice(arg) == expected


def test_secrets_are_named_not_stored():
    cfg = compose_config()
    dumped = OmegaConf.to_yaml(cfg)
    assert "api_key_env" in dumped
    assert "sk-" not in dumped
