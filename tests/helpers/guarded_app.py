"""A tiny Hydra app run through mmgen's guard: `outcome=ok|stop|user|config|bug` picks its ending.

It carries the same `hydra.callbacks` entry as conf/config.yaml, and no model imports, so a
subprocess test of the error paths starts in about a second.
"""
import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from mmgen.errors import StageStop, UserError, guard

ConfigStore.instance().store(name="app", node={
    "outcome": "ok", "needed": "???",
    "hydra": {"callbacks": {"report_user_errors": {"_target_": "mmgen.errors.ReportUserErrors"}},
              "run": {"dir": "${oc.env:APP_OUT}"}}})


@hydra.main(version_base="1.3", config_path=None, config_name="app")
def main(cfg: DictConfig) -> None:
    if cfg.outcome == "stop":
        raise StageStop("wrote 3 requests to requests.jsonl; send them, then run again")
    if cfg.outcome == "user":
        raise UserError("reference.json: sample 3 field 'conversations': has no question")
    if cfg.outcome == "config":
        print(cfg.needed)  # ??? was never set
    if cfg.outcome == "bug":
        raise KeyError("an unexpected bug")


if __name__ == "__main__":
    guard(main)
