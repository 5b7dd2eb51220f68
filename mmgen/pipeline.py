"""The whole MM-Gen method in one command: the runner brings the last stage (mmgen.stages.LAST_STAGE)
up to date, which runs every stage it needs, each at most once, skipping what is fresh."""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmgen import CONF_DIR, runner
from mmgen.contracts import read_json
from mmgen.metrics import accuracy_text
from mmgen.stage import launch
from mmgen.stages import LAST_STAGE

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    """Run every stage in order and return the report's path."""
    out = runner.run(cfg, LAST_STAGE)
    for label, folder in (("Base model", "eval_base"), ("Trained model", "eval")):
        if (out / folder / "metrics.json").is_file():
            metrics = read_json(out / folder / "metrics.json")
            print(f"{label}: {metrics['metric']} {accuracy_text(metrics)} on "
                  f"{metrics['count']} eval questions")
    report_path = (out / "report.html").resolve()
    log.info("report: %s", report_path)
    print(f"Report: {report_path}")
    return report_path


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
