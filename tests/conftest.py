"""Shared fixtures: composing the real config tree the way the stage apps do."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from mmgen.testing.config import compose_config

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


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
