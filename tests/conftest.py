"""Shared fixtures: composing the real config tree the way the stage apps do."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import mmgen.stage  # noqa: F401  (registers the schema)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(overrides: list[str] | None = None, out_dir: Path | None = None) -> DictConfig:
    """Compose conf/config.yaml with overrides; ${hydra:...} resolves as in a real run."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides or []), return_hydra_config=True)
            with open_dict(cfg):  # compose() leaves runtime.output_dir unset; a run sets it
                cfg.hydra.runtime.output_dir = cfg.hydra.run.dir
            HydraConfig().set_config(cfg)
    finally:
        GlobalHydra.instance().clear()
    if out_dir is not None:
        with open_dict(cfg):
            cfg.paths.out_dir = str(out_dir)
            cfg.paths.cache_dir = str(out_dir / ".cache")
    return cfg


@pytest.fixture
def make_config(tmp_path):
    """Compose a config whose out_dir and cache live in this test's tmp_path."""
    def _make(*overrides: str, out_dir: Path | None = None) -> DictConfig:
        return compose_config(list(overrides), out_dir or tmp_path / "out")
    return _make


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small demo domain (about 150 images), built once per session. Tests must not change it."""
    from mmgen.testing.demo_prompts import build_small_demo

    return build_small_demo(tmp_path_factory.mktemp("small_demo"))


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """The default-size demo domain, built once per session. Tests must not change it."""
    from mmgen.demo import ensure_demo_data

    root = tmp_path_factory.getbasetemp() / "demo_data"
    ensure_demo_data(root)
    return root


@pytest.fixture(scope="session")
def curation_demo_root(tmp_path_factory) -> Path:
    """An even smaller demo domain (10 reference charts, 22 pool images) for the curation tests."""
    from curation_data import SMALL_COUNTS

    from mmgen.testing.demo_prompts import build_small_demo

    return build_small_demo(tmp_path_factory.mktemp("curation_demo"), SMALL_COUNTS)
