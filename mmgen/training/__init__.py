"""Trainers for the train stage: the interface every trainer follows.

`mmgen.train` builds the trainer named by `train.trainer._target_` with hydra's instantiate,
passing the node's own keys plus the stage-wide knobs below, then calls `train()` once:

    trainer = instantiate(cfg.train.trainer, epochs=..., max_steps=..., batch_size=..., lr=...,
                          save_every_steps=..., log_every_steps=..., seed=cfg.seed,
                          device=..., progress=..., _convert_="all")
    stats = trainer.train(samples, image_root, out_dir, log_path)

- `samples`: LLaVA-format dicts ({id, image_1?, conversations: [{from: human|gpt, value}]}),
  already validated; the first human turn is the question (with an `<image>` tag), the first
  gpt turn the answer. Images are relative to `image_root`.
- `out_dir`: the experiment's `train/` folder. The trainer saves the trained model there (demo:
  `model.pt`; hf: the LoRA adapter) and keeps its resumable checkpoint there too: when one is
  present, training continues from it and gives the same result as an uninterrupted run.
- `log_path`: `train/log.jsonl`. One JSON line per logged step: {"step", "epoch", "loss", "lr"}
  (loss: mean answer-token cross-entropy over the steps since the last record). A resumed run
  keeps the records before its checkpoint and drops any written after it.
- returns stats for stats.json: at least {"samples", "steps", "final_loss", "samples_per_s"}.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from mmgen.errors import UserError


class Trainer(ABC):
    """Fine-tunes a target model on LLaVA-format samples; see the module docstring."""

    outputs: tuple[str, ...] = ()  # files the model is saved as in train/ (the stage's outputs)
    default_files: tuple[Path, ...] = ()  # files read when train.trainer.model is null (digested)

    def __init__(self, epochs: float, batch_size: int, lr: float, save_every_steps: int,
                 log_every_steps: int, seed: int = 0, max_steps: int | None = None,
                 device: str = "auto", progress: bool = True):
        if epochs <= 0 and not max_steps:
            raise UserError(f"train.epochs: {epochs} trains nothing; give a positive number "
                             "of epochs or train.max_steps")
        for key, value in (("batch_size", batch_size), ("save_every_steps", save_every_steps),
                           ("log_every_steps", log_every_steps)):
            if value < 1:
                raise UserError(f"train.{key}: {value} must be at least 1")
        if lr <= 0:
            raise UserError(f"train.lr: {lr} must be positive")
        self.epochs, self.max_steps, self.batch_size, self.lr = epochs, max_steps, batch_size, lr
        self.save_every_steps, self.log_every_steps = save_every_steps, log_every_steps
        self.seed, self.device, self.progress = seed, device, progress

    def total_steps(self, num_samples: int) -> int:
        """Optimizer steps for `num_samples` samples: max_steps, else epochs x steps per epoch."""
        if self.max_steps:
            return self.max_steps
        per_epoch = -(-num_samples // self.batch_size)
        return max(1, round(self.epochs * per_epoch))

    @abstractmethod
    def train(self, samples: Sequence[dict], image_root: Path, out_dir: Path,
              log_path: Path) -> dict:
        """Fine-tune on `samples`; save the model into out_dir; log the loss curve; return stats."""
