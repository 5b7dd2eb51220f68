"""The whole MM-Gen method in one command: partition -> retrieve -> prompts -> generate ->
filter -> export -> report. Each stage first runs its upstream stage, and skips itself when its
result is fresh, so running the last stage runs them all, each at most once."""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmgen import CONF_DIR
from mmgen import report
from mmgen.stage import launch

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    """Run every stage in order and return the report's path."""
    report_path = (report.run(cfg) / "report.html").resolve()
    log.info("report: %s", report_path)
    print(f"Report: {report_path}")
    return report_path


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
