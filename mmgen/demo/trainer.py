"""The demo trainer: fine-tunes the demo's tiny target model on the CPU.

Starts from the committed base model (mmgen/demo/target_model.py) or `train.trainer.model`,
and minimises the same loss the filter scores with: the mean cross-entropy over each answer's
characters plus its end mark. AdamW, a linear warm-up then cosine decay, batches in a seeded
order: the same seed and samples give the same model. A checkpoint in train/ every
`save_every_steps` lets a killed run continue where it stopped, with the same result.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from mmgen.contracts import iter_jsonl, write_jsonl
from mmgen.demo.target_model import (
    CHECKPOINT,
    TinyVQA,
    encode_batch,
    images_tensor,
    load_target_model,
    save_target_model,
    sequence_losses,
)
from mmgen.scoring import load_image, prompt_and_answer, resolve_device
from mmgen.training import Trainer

log = logging.getLogger(__name__)
MODEL_NAME = "model.pt"
CHECKPOINT_NAME = "checkpoint.pt"


class DemoTrainer(Trainer):
    """Fine-tunes TinyVQA on LLaVA-format samples; writes train/model.pt and train/log.jsonl."""

    outputs = (MODEL_NAME,)  # what it saves in train/ besides log.jsonl
    default_files = (CHECKPOINT,)  # the base model read when train.trainer.model is null

    def __init__(self, model: str | None = None, warmup_ratio: float | None = None,
                 weight_decay: float | None = None, **options):
        common = {key: options.pop(key) for key in list(options) if key in COMMON_KEYS}
        super().__init__(**common)
        unused = [key for key, value in options.items() if value is not None]
        if unused:
            log.warning("the demo trainer ignores %s",
                        ", ".join(f"train.trainer.{key}" for key in unused))
        self.base = Path(model) if model else CHECKPOINT
        self.warmup_ratio = 0.1 if warmup_ratio is None else warmup_ratio
        self.weight_decay = 0.01 if weight_decay is None else weight_decay

    def train(self, samples: Sequence[dict], image_root: Path, out_dir: Path,
              log_path: Path) -> dict:
        """Fine-tune on `samples`; save train/model.pt; log the loss curve; return stats."""
        out_dir.mkdir(parents=True, exist_ok=True)
        device = resolve_device(self.device)
        images, questions, answers = load_samples(samples, image_root)
        model = load_target_model(self.base, device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr,
                                      weight_decay=self.weight_decay)
        total = self.total_steps(len(samples))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(total, round(self.warmup_ratio * total)))
        run_key = self.run_key(samples)
        start = resume(out_dir / CHECKPOINT_NAME, run_key, model, optimizer, schedule, log_path)
        per_epoch = math.ceil(len(samples) / self.batch_size)
        threads = torch.get_num_threads()
        # the model's ops are tiny: on a busy CPU a second thread's hand-offs cost more than it
        # adds (benchmarks/bench_train.py measures both)
        torch.set_num_threads(1)
        started, pending = time.perf_counter(), []
        try:
            bar = tqdm(range(start, total), initial=start, total=total, unit="step",
                       disable=not self.progress, desc="train")
            for step in bar:
                rows = batch_rows(len(samples), self.batch_size, self.seed, step, per_epoch)
                encoded = {k: v.to(device) for k, v in encode_batch(
                    [questions[i] for i in rows], [answers[i] for i in rows]).items()}
                logits = model(images[rows].to(device),
                               encoded["question"], encoded["decoder_input"])
                loss = sequence_losses(logits, encoded["target"]).mean()
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                pending.append(loss.item())
                done = step + 1
                if done % self.log_every_steps == 0 or done == total:
                    append_log(log_path, {"step": done, "epoch": round(done / per_epoch, 4),
                                          "loss": round(sum(pending) / len(pending), 5),
                                          "lr": schedule.get_last_lr()[0]})
                    bar.set_postfix(loss=f"{sum(pending) / len(pending):.3f}")
                    pending = []
                if done % self.save_every_steps == 0 and done < total:
                    save_checkpoint(out_dir / CHECKPOINT_NAME, run_key, done, model, optimizer,
                                    schedule)
        finally:
            torch.set_num_threads(threads)
        seconds = time.perf_counter() - started
        curve = [record["loss"] for record in iter_jsonl(log_path)]
        save_target_model(model.eval(), out_dir / MODEL_NAME,
                          {"base": str(self.base), "samples": len(samples), "steps": total,
                           "seed": self.seed, "final_loss": curve[-1]}, half=False)
        (out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)  # model.pt is the result now
        return {"samples": len(samples), "steps": total, "resumed_from_step": start,
                "epochs": round(total / per_epoch, 3), "first_loss": curve[0],
                "final_loss": curve[-1], "seconds": round(seconds, 2),
                "samples_per_s": round((total - start) * self.batch_size / max(seconds, 1e-9), 1)}

    def run_key(self, samples: Sequence[dict]) -> str:
        """What a checkpoint must have been made with to be resumed: samples, base, knobs."""
        payload = json.dumps([list(samples), str(self.base), self.base.stat().st_size,
                              self.epochs, self.max_steps, self.batch_size, self.lr, self.seed,
                              self.warmup_ratio, self.weight_decay], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


COMMON_KEYS = ("epochs", "max_steps", "batch_size", "lr", "save_every_steps", "log_every_steps",
               "seed", "device", "progress")


def load_samples(samples: Sequence[dict],
                 image_root: Path) -> tuple[torch.Tensor, list[str], list[str]]:
    """Image tensors (each file read once), questions and answers of LLaVA-format samples."""
    opened: dict[str | None, Image.Image | None] = {None: None}  # text-only (tqa): plain grey
    for sample in samples:
        relative = sample.get("image_1")
        if relative not in opened:
            opened[relative] = load_image(image_root, relative)
    tensors = {relative: images_tensor([image])[0] for relative, image in opened.items()}
    questions, answers = zip(*(prompt_and_answer(sample) for sample in samples))
    images = torch.stack([tensors[sample.get("image_1")] for sample in samples])
    return images, list(questions), list(answers)


def batch_rows(num_samples: int, batch_size: int, seed: int, step: int,
               per_epoch: int) -> list[int]:
    """Sample indices of one step: each epoch is a fresh seeded permutation, so any step's
    batch is known without replaying the ones before it (resuming needs no saved RNG)."""
    epoch, index = divmod(step, per_epoch)
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed * 100003
                                                                                 + epoch))
    return order[index * batch_size:(index + 1) * batch_size].tolist()


def warmup_cosine(total: int, warmup: int):
    """LR multiplier: linear warm-up over `warmup` steps, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def append_log(log_path: Path, record: dict) -> None:
    """Append one loss record to train/log.jsonl."""
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def save_checkpoint(path: Path, run_key: str, step: int, model: TinyVQA,
                    optimizer: torch.optim.Optimizer, schedule) -> None:
    """Everything needed to continue after `step`, written atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save({"run_key": run_key, "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()},
               temporary)
    os.replace(temporary, path)


def resume(path: Path, run_key: str, model: TinyVQA, optimizer: torch.optim.Optimizer,
           schedule, log_path: Path) -> int:
    """Load a matching checkpoint and return its step (0 without one); trim the log to it."""
    step = 0
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("run_key") == run_key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            step = state["step"]
            log.info("train: resuming from %s at step %d", path, step)
        else:
            log.warning("train: %s was made with other samples or settings; starting over", path)
    kept = [r for r in iter_jsonl(log_path, tolerate_torn_tail=True)
            if r["step"] <= step] if step and log_path.is_file() else []
    write_jsonl(log_path, kept)  # records past the checkpoint are made again
    return step
