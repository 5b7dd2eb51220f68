"""LoRA fine-tuning of any Hugging Face image-text-to-text model (LLaVA, Qwen2-VL...).

transformers' Trainer runs the loop (mixed precision, gradient accumulation, checkpoints, resume,
several GPUs under `accelerate launch` or torchrun) and peft adds the adapter. The batches are the
filter scorer's own encoding (mmgen.scoring.hf): prompt and answer tokenised together, labels
masked up to the prompt's length, so the model learns exactly the tokens the filter scored.

Needs the `train` extra (transformers, peft, accelerate). Writes into `train/`: the adapter files
(adapter_config.json, adapter_model.safetensors; `PeftModel.from_pretrained(base, "train")`), and
`checkpoints/` while training, removed once the adapter is saved.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from mmgen.errors import UserError
from mmgen.scoring.hf import IGNORE_INDEX, HFScorer
from mmgen.training import Trainer

log = logging.getLogger(__name__)
CHECKPOINTS, RUN_KEY = "checkpoints", "run_key.txt"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class HFTrainer(Trainer):
    """LoRA SFT of a transformers model on answer tokens only; see the module docstring."""

    outputs = ("adapter_config.json", "adapter_model.safetensors")  # in train/, for the runner

    def __init__(self, model: str | None = None, lora: dict | None = None,
                 model_class: str | None = None, processor: str | None = None,
                 dtype: str | None = None, max_image_side: int | None = None,
                 micro_batch_size: int | None = None, warmup_ratio: float | None = None,
                 weight_decay: float | None = None, gradient_checkpointing: bool | None = None,
                 num_workers: int | None = None, **common):
        super().__init__(**common)
        if not model:
            raise UserError("train.trainer.model is empty: name a Hugging Face hub id or a local "
                            "model folder, e.g. train.trainer.model=llava-hf/llava-1.5-7b-hf")
        if not lora:
            raise UserError("train.trainer.lora is not set: give the adapter's r, alpha, dropout "
                            "and target_modules (see conf/train/hf.yaml)")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("train.device=cuda but no GPU is visible; use train.device=auto")
        self.model_path, self.model_class, self.lora = model, model_class, lora
        self.processor_path, self.max_image_side = processor or model, max_image_side
        self.dtype = resolve_dtype(dtype or "auto", self.device)
        self.micro_batch_size = micro_batch_size
        self.warmup_ratio, self.weight_decay = warmup_ratio or 0.0, weight_decay or 0.0
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.num_workers = num_workers or 0

    def train(self, samples: Sequence[dict], image_root: Path, out_dir: Path,
              log_path: Path) -> dict:
        """Fine-tune a LoRA adapter on `samples`, resuming from train/checkpoints/ if present."""
        import transformers
        from transformers.trainer_callback import PrinterCallback

        if not samples:
            raise UserError("train: no training samples; check train.data and its file")
        out_dir, checkpoints = Path(out_dir), Path(out_dir) / CHECKPOINTS
        transformers.set_seed(self.seed)  # the adapter's initial weights
        encoder = self.encoder()
        model = self.peft_model()
        args = self.arguments(checkpoints, len(samples))
        trainer = transformers.Trainer(
            model=model, args=args, train_dataset=list(samples),
            data_collator=AnswerOnlyCollator(encoder, image_root), callbacks=[LossLog(log_path)])
        trainer.remove_callback(PrinterCallback)  # LossLog logs each record instead
        with args.main_process_first(desc="checkpoints"):  # rank 0 clears stale ones first
            resume = self.checkpoint_to_resume(checkpoints, self.run_key(samples, image_root))
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume)
        seconds = time.perf_counter() - started
        trainer.save_model(str(out_dir))  # the adapter only (peft), on the main process
        resumed_step = int(Path(resume).name.split("-")[-1]) if resume else 0
        trained_steps = trainer.state.global_step - resumed_step
        if trainer.is_world_process_zero():
            shutil.rmtree(checkpoints, ignore_errors=True)
            for leftover in ("training_args.bin", "README.md"):  # pickled args; a blank card
                (out_dir / leftover).unlink(missing_ok=True)
        records = read_log(log_path)
        return {"samples": len(samples), "steps": trainer.state.global_step,
                "final_loss": records[-1]["loss"] if records else None,
                "samples_per_s": round(trained_steps * self.batch_size / seconds, 3),
                "devices": args.world_size, "micro_batch_size": args.per_device_train_batch_size,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "resumed_from_step": resumed_step}

    def run_key(self, samples: Sequence[dict], image_root: Path) -> str:
        """What a checkpoint must have been made with to be resumed: data, model, knobs."""
        payload = json.dumps([list(samples), str(image_root), self.model_path, self.model_class,
                              self.processor_path, str(self.dtype), self.max_image_side,
                              self.lora, self.epochs, self.max_steps, self.batch_size, self.lr,
                              self.seed, self.warmup_ratio, self.weight_decay],
                             sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def checkpoint_to_resume(self, checkpoints: Path, run_key: str) -> str | None:
        """The last checkpoint of this same run, or None; another run's checkpoints are removed."""
        from transformers.trainer_utils import get_last_checkpoint

        key_file = checkpoints / RUN_KEY
        if checkpoints.is_dir() and (not key_file.is_file() or key_file.read_text() != run_key):
            log.warning("%s holds checkpoints of another configuration or data; starting over",
                        checkpoints)
            shutil.rmtree(checkpoints)
        checkpoints.mkdir(parents=True, exist_ok=True)
        key_file.write_text(run_key)
        resume = get_last_checkpoint(str(checkpoints))
        if resume:
            log.info("resuming from %s", resume)
        return resume

    def encoder(self) -> HFScorer:
        """The filter scorer's batch encoding, with the processor only (no second model)."""
        import transformers

        encoder = HFScorer(model=self.model_path, processor=self.processor_path,
                           max_image_side=self.max_image_side, device="cpu")
        encoder.processor = transformers.AutoProcessor.from_pretrained(self.processor_path)
        encoder.tokenizer.padding_side = "right"  # as HFScorer.load: positions as unpadded
        return encoder

    def base_model(self):
        """The model to adapt, loaded by `model_class` in the training dtype."""
        from mmgen.scoring.checkpoints import model_class

        loader = model_class(self.model_class, "train.trainer.model_class")
        # straight onto this process's GPU: eight ranks do not each stage 14 GB in host memory
        device_map = {"": int(os.environ.get("LOCAL_RANK", "0"))} if on_gpu(self.device) else None
        try:
            return loader.from_pretrained(self.model_path, dtype=self.dtype, device_map=device_map)
        except OSError as err:
            raise UserError(f"train.trainer.model '{self.model_path}' could not be loaded: "
                            f"{err}") from err

    def peft_model(self):
        """The base model with fresh LoRA adapters on the layers `lora.target_modules` matches."""
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=self.lora["r"], lora_alpha=self.lora["alpha"],
                            lora_dropout=self.lora["dropout"],
                            target_modules=self.lora["target_modules"],
                            modules_to_save=self.lora.get("modules_to_save"), task_type="CAUSAL_LM")
        model = self.base_model()
        try:
            return get_peft_model(model, config)
        except ValueError as err:  # no module matched the pattern
            raise UserError(f"train.trainer.lora.target_modules "
                            f"'{self.lora['target_modules']}': {err}") from err

    def arguments(self, checkpoints: Path, num_samples: int):
        """TrainingArguments for `batch_size` samples per optimizer step on however many devices."""
        from transformers import TrainingArguments

        world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate
        per_device, accumulation = batch_plan(self.batch_size, self.micro_batch_size, world_size)
        gpu = on_gpu(self.device)
        # names that moved between transformers releases: 4.x takes the warm-up share as
        # warmup_ratio, 5.x as a fraction in warmup_steps; 5.24 renamed gradient_checkpointing
        fields = TrainingArguments.__dataclass_fields__
        warmup = {"warmup_ratio" if "warmup_ratio" in fields else "warmup_steps": self.warmup_ratio}
        checkpointing = ("activation_checkpointing" if "activation_checkpointing" in fields
                         else "gradient_checkpointing")
        recompute = ({checkpointing: True, f"{checkpointing}_kwargs": {"use_reentrant": False}}
                     if self.gradient_checkpointing else {})
        return TrainingArguments(
            output_dir=str(checkpoints), max_steps=self.total_steps(num_samples),
            per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation,
            learning_rate=self.lr, lr_scheduler_type="cosine", **warmup,
            weight_decay=self.weight_decay, seed=self.seed, data_seed=self.seed,
            bf16=gpu and self.dtype == torch.bfloat16,
            fp16=gpu and self.dtype == torch.float16, use_cpu=not gpu,
            logging_steps=self.log_every_steps, save_steps=self.save_every_steps,
            save_total_limit=2, dataloader_num_workers=self.num_workers,
            remove_unused_columns=False,  # the collator needs the raw sample dicts
            report_to="none", disable_tqdm=not self.progress, **recompute)


class AnswerOnlyCollator:
    """Turns a list of samples into model inputs exactly as the filter's scorer encodes them."""

    def __init__(self, encoder: HFScorer, image_root: str | Path):
        self.encoder, self.image_root = encoder, image_root

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        # the scorer encodes samples with images and text-only ones apart (tqa rows among vqa)
        groups = ([s for s in samples if s.get("image_1")], [s for s in samples
                                                             if not s.get("image_1")])
        parts = [self.encoder.encode(group, self.image_root) for group in groups if group]
        if len(parts) == 1:
            return parts[0]
        return stack_batches(parts, self.encoder.tokenizer.pad_token_id or 0)


def stack_batches(parts: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch from several encoded ones: per-token tensors right-padded to the longest row,
    image tensors (pixel values, grid sizes) concatenated in row order."""
    length = max(part["input_ids"].shape[1] for part in parts)
    pad_values = {"input_ids": pad_id, "labels": IGNORE_INDEX}
    merged = {}
    for key in {key for part in parts for key in part}:
        values = []
        for part in [part for part in parts if key in part]:
            value = part[key]
            if value.shape[:2] == part["input_ids"].shape:  # one entry per token
                value = F.pad(value, (0, length - value.shape[1]), value=pad_values.get(key, 0))
            values.append(value)
        merged[key] = torch.cat(values)
    return merged


class LossLog(TrainerCallback):
    """Appends each logged loss to log.jsonl; a resumed run first drops records past its step."""

    def __init__(self, path: str | Path):
        self.path, self.started = Path(path), time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.started = time.perf_counter()
        kept = [r for r in read_log(self.path) if r["step"] <= state.global_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(record) + "\n" for record in kept))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:  # the curve always ends at the last step
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                  "loss": round(float(logs["loss"]), 6), "lr": logs.get("learning_rate"),
                  "grad_norm": logs.get("grad_norm"),
                  "elapsed_s": round(time.perf_counter() - self.started, 3)}  # since this run began
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        log.info("step %d/%d loss %.4f", state.global_step, state.max_steps, record["loss"])


def read_log(path: str | Path) -> list[dict]:
    """The loss records of a log.jsonl, oldest first; none when the file is absent."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def on_gpu(device: str) -> bool:
    """Whether train.device puts training on a GPU (auto and cuda do when one is visible)."""
    return device != "cpu" and torch.cuda.is_available()


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto' is bfloat16 on a GPU and float32 on the CPU (CPU half precision is slow)."""
    if dtype == "auto":
        return torch.bfloat16 if on_gpu(device) else torch.float32
    if dtype not in DTYPES:
        raise UserError(f"train.trainer.dtype '{dtype}' is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def batch_plan(batch_size: int, micro_batch_size: int | None, world_size: int) -> tuple[int, int]:
    """Per-device batch and accumulation steps that add up to `batch_size` samples per step,
    so a step averages as many samples on one GPU as on eight."""
    per_device = micro_batch_size or -(-batch_size // world_size)
    if batch_size % (per_device * world_size):
        raise UserError(f"train.batch_size {batch_size} is not a multiple of "
                        f"train.trainer.micro_batch_size {per_device} x {world_size} device(s); "
                        "pick sizes that divide it")
    return per_device, batch_size // (per_device * world_size)
