"""Stage train: fine-tune the target model on this experiment's data.

    python -m mmgen.train +experiment=NAME                       # on filtered.json (MM-Gen)
    python -m mmgen.train +experiment=NAME train.data=unfiltered # on data.json, before filtering
    python -m mmgen.train +experiment=NAME train.data=skyline    # on the dataset's own dataset.train

The trainer is `train.trainer._target_` (mmgen.demo.trainer.DemoTrainer on the CPU,
mmgen.training.hf.HFTrainer for LoRA on a Hugging Face VLM); see mmgen/training/__init__.py for
what every trainer does. Writes into `<out_dir>/train/`: the model (demo: model.pt; hf: the LoRA
adapter) and `log.jsonl`, the loss curve. A checkpoint kept there while it runs lets a killed run
continue.
"""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from mmgen import CONF_DIR, runner
from mmgen.contracts import ContractError, load_dataset
from mmgen.errors import UserError
from mmgen.schema.train import TrainData
from mmgen.stage import file_digest, launch

log = logging.getLogger(__name__)
TRAIN_DIR, LOG_NAME = "train", "log.jsonl"
# train.data -> the stage whose output it trains on (the skyline needs none)
UPSTREAM = {TrainData.filtered: ("filter",), TrainData.unfiltered: ("generate",),
            TrainData.skyline: ()}
COMMON_KEYS = ("epochs", "max_steps", "batch_size", "lr", "save_every_steps", "log_every_steps",
               "device", "progress")


def data_choice(cfg: DictConfig) -> TrainData:
    """train.data as its Enum (a composed config holds the Enum, a plain dict its name)."""
    return TrainData(getattr(cfg.train.data, "value", cfg.train.data))


def data_path(cfg: DictConfig) -> Path:
    """The file train.data names: filtered.json, data.json or the dataset's training set."""
    choice = data_choice(cfg)
    if choice is TrainData.skyline:
        return Path(cfg.dataset.root) / cfg.dataset.train
    return Path(cfg.paths.out_dir) / ("filtered.json" if choice is TrainData.filtered
                                      else "data.json")


def upstream(cfg: DictConfig) -> tuple[str, ...]:
    """filter for train.data=filtered, generate for unfiltered, nothing for skyline."""
    return UPSTREAM[data_choice(cfg)]


def outputs(cfg: DictConfig) -> tuple[str, ...]:
    """train/log.jsonl plus the files the configured trainer saves its model as."""
    trainer_class = get_class(cfg.train.trainer._target_)
    return (f"{TRAIN_DIR}/{LOG_NAME}",
            *(f"{TRAIN_DIR}/{name}" for name in getattr(trainer_class, "outputs", ())))


def inputs(cfg: DictConfig) -> dict[str, str]:
    """Digests of the training data file and of a base model given as a local file."""
    files = [data_path(cfg)]
    if cfg.train.trainer.model and Path(cfg.train.trainer.model).is_file():
        files.append(Path(cfg.train.trainer.model))
    elif not cfg.train.trainer.model:
        files += [Path(path) for path in getattr(get_class(cfg.train.trainer._target_),
                                                 "default_files", ())]
    return {str(path): file_digest(path) for path in files if path.is_file()}


def validate(cfg: DictConfig) -> None:
    """Checks that need no upstream result: the skyline's file and the trainer's class."""
    try:
        get_class(cfg.train.trainer._target_)
    except Exception as err:  # hydra wraps the import error
        raise UserError(f"train.trainer._target_: cannot import '{cfg.train.trainer._target_}' "
                        f"({err}); use mmgen.demo.trainer.DemoTrainer or "
                        "mmgen.training.hf.HFTrainer") from err
    if data_choice(cfg) is TrainData.skyline:
        if not cfg.dataset.train:
            raise UserError(f"train.data=skyline: dataset '{cfg.dataset.name}' names no "
                            "training set; set dataset.train to a reference-format file "
                            "under dataset.root")
        if not data_path(cfg).is_file():
            raise UserError(f"train.data=skyline: dataset.train '{data_path(cfg)}' not found")
    model = cfg.train.trainer.model
    if model and model.startswith((".", "/")) and not Path(model).exists():
        raise UserError(f"train.trainer.model: '{model}' not found")


def build_trainer(cfg: DictConfig):
    """The trainer `train.trainer._target_` names, given the stage-wide knobs and the seed."""
    common = {key: cfg.train[key] for key in COMMON_KEYS}
    return instantiate(cfg.train.trainer, **common, seed=cfg.seed, _convert_="all")


def compute(cfg: DictConfig, work_dir: Path) -> dict:
    """Train on the samples train.data names; write the model and log.jsonl into work_dir/train/."""
    path, choice = data_path(cfg), data_choice(cfg)
    if not path.is_file():
        made_by = f"the {UPSTREAM[choice][0]} stage" if UPSTREAM[choice] else "dataset.train"
        raise UserError(f"train.data={choice.value}: '{path}' not found ({made_by} makes it)")
    dataset = load_dataset(path)
    samples = dataset["samples"]
    if not samples:
        raise ContractError(path, "samples", f"is empty: nothing to train on "
                            f"(train.data={choice.value})")
    # a generated file's image_folder is absolute; a dataset's own is relative to dataset.root
    image_root = (Path(cfg.dataset.root) / dataset["image_folder"]
                  if choice is TrainData.skyline else Path(dataset["image_folder"]))
    train_dir = work_dir / TRAIN_DIR
    trainer = build_trainer(cfg)
    log.info("train: %d samples from %s with %s", len(samples), path, type(trainer).__name__)
    stats = trainer.train(samples, image_root, train_dir, train_dir / LOG_NAME)
    return {"data": choice.value, "data_file": str(path), **stats}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    print(f"Model: {(runner.run(cfg, 'train') / TRAIN_DIR).resolve()}")


if __name__ == "__main__":
    launch(main)
