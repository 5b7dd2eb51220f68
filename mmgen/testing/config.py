"""Composing the real config tree the way a stage app does, for tests and benchmarks."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import mmgen.stage  # noqa: F401  (registers the schema and resolvers)
from mmgen import CONF_DIR


def compose_config(overrides: list[str] | None = None, out_dir: Path | None = None) -> DictConfig:
    """Compose conf/config.yaml with overrides; ${hydra:...} resolves as in a real run. With
    out_dir, the run's files and its cache go there."""
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
            cfg.paths.cache_dir = str(Path(out_dir) / ".cache")
    return cfg
