"""Schema of the train stage (conf/train/*.yaml): which data, which trainer, how long."""
from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING


class TrainData(Enum):
    """Which samples the target model is fine-tuned on."""
    filtered = "filtered"  # filtered.json: MM-Gen's kept samples
    unfiltered = "unfiltered"  # data.json: everything generated, before filtering
    skyline = "skyline"  # dataset.train: the dataset's own training set


@dataclass
class TrainerConfig:
    _target_: str = MISSING  # trainer class (mmgen.training.*), built with hydra instantiate
    # base model: demo: a checkpoint, null = the committed base; hf: hub id or local folder
    model: str | None = None


@dataclass
class TrainConfig:
    data: TrainData = MISSING  # filtered | unfiltered | skyline
    epochs: float = MISSING  # passes over the training samples
    max_steps: int | None = None  # stop after this many optimizer steps; null = epochs decide
    batch_size: int = MISSING  # samples per optimizer step
    lr: float = MISSING  # peak learning rate
    save_every_steps: int = MISSING  # steps between resumable checkpoints in train/
    log_every_steps: int = MISSING  # steps between loss records in train/log.jsonl
    device: str = "auto"  # auto | cpu | cuda (speed only)
    progress: bool = True  # show a progress bar (speed only)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
