"""The whole MM-Gen method in one command: partition -> retrieve -> prompts -> generate ->
filter -> export -> report. Each stage skips itself when its result is fresh."""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmgen.stage import launch, out_dir

log = logging.getLogger(__name__)
STAGES = ["partition", "retrieve", "prompts", "generate", "filter", "export", "report"]


def run(cfg: DictConfig) -> Path:
    """Run every stage in order and return the report's path."""
    for stage in STAGES:
        importlib.import_module(f"mmgen.{stage}").run(cfg)
    report_path = (out_dir(cfg) / "report.html").resolve()
    log.info("report: %s", report_path)
    print(f"Report: {report_path}")
    return report_path


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
