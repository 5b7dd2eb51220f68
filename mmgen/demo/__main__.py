"""Build the demo domain: python -m mmgen.demo data_dir=DIR [seed=N] [counts.pool.map=100]."""
from __future__ import annotations

import logging

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from mmgen import CONF_DIR
from mmgen.demo.build import DemoBuildConfig, build_demo

log = logging.getLogger("mmgen.demo")
ConfigStore.instance().store(name="demo_build_schema", node=DemoBuildConfig)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="demo_build")
def main(cfg: DictConfig) -> None:
    build_demo(cfg.data_dir, cfg.seed, counts=OmegaConf.to_container(cfg.counts),
               eval_questions=cfg.eval_questions,
               train_questions=cfg.train_questions)  # logs what it wrote


if __name__ == "__main__":
    main()
