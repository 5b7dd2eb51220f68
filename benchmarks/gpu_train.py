"""Benchmark: the hf trainer's LoRA SFT on a GPU, with a LLaVA-1.5-7B-shaped model.

Nothing is downloaded: the model is built from a config with random weights (bf16, straight on
the device), the processor is built locally (mmgen.testing.random_models), and the samples are
bar charts drawn on the fly (benchmarks/gpu_filter.py's make_samples). In samples/s:
  - trainer: HFTrainer.train, the path `python -m mmgen.train train=llava_1_5_7b` runs (data
    loader workers decode, run the processor and tokenise; bf16 autocast forward + backward
    through LoRA; AdamW, clipping, schedule, loss log), read from log.jsonl after the warm-up;
  - raw: the same LoRA model's forward + backward on one batch already encoded and on the
    device, with the same precision and checkpointing (the baseline);
  - evaluation: mmgen.evaluation.hf.HFEvaluator answering with the trained adapter (batched
    greedy generation; random weights never stop early, so every answer is max_new_tokens long).
and prints trainer / raw. Random weights change no timing: the work per token is the same.

    python benchmarks/gpu_train.py            # llava-1.5-7b, bf16, 16 per step, 12 steps
    python benchmarks/gpu_train.py --tiny     # CPU smoke test of the same code (a minute)

It needs torch, transformers, peft, accelerate, tokenizers, Pillow and mmgen's imports
(hydra-core, omegaconf). Before measuring it checks that a few steps of training on the tiny
model lower the loss on the device, and says so loudly if they do not.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_filter's chart samples

from gpu_filter import make_samples

from mmgen.scoring import resolve_device
from mmgen.scoring.hf import HFScorer
from mmgen.testing.random_models import build_config, build_processor
from mmgen.training.hf import AnswerOnlyCollator, HFTrainer, read_log

LORA_7B = {"r": 128, "alpha": 256, "dropout": 0.05,  # conf/train/llava_1_5_7b.yaml
           "target_modules": r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj"
                             r"|up_proj|down_proj)"}


class RandomWeightTrainer(HFTrainer):
    """HFTrainer whose base model is built from a config on the device, not read from files."""

    def __init__(self, size: str, **options):
        super().__init__(model=f"random:{size}", **options)
        self.size, self.processor = size, build_processor(size)  # built once: it trains a BPE

    def encoder(self) -> HFScorer:
        encoder = HFScorer(model=self.model_path, device="cpu")
        encoder.processor = self.processor
        encoder.tokenizer.padding_side = "right"
        return encoder

    def base_model(self):
        from transformers import LlavaForConditionalGeneration

        config = build_config(self.size, self.processor.tokenizer)
        torch.manual_seed(0)
        with torch.device(resolve_device(self.device)):  # weights made on the GPU, in the dtype
            return LlavaForConditionalGeneration._from_config(config, dtype=self.dtype)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def steady_rate(log_path: Path, batch_size: int, warmup_steps: int) -> float:
    """Samples/s between the end of step `warmup_steps` and the last step, from log.jsonl."""
    records = read_log(log_path)
    first = next(r for r in records if r["step"] >= warmup_steps)
    last = records[-1]
    return (last["step"] - first["step"]) * batch_size / (last["elapsed_s"] - first["elapsed_s"])


def raw_rate(trainer: RandomWeightTrainer, samples: list[dict], image_root: Path,
             repeats: int) -> float:
    """Forward + backward samples/s of the LoRA model on one encoded batch on the device."""
    device = resolve_device(trainer.device)
    model = trainer.peft_model().train()
    if trainer.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    per_device = trainer.micro_batch_size or trainer.batch_size
    batch = AnswerOnlyCollator(trainer.encoder(), image_root)(samples[:per_device])
    batch = {key: value.to(device) for key, value in batch.items()}
    autocast = torch.autocast(device.split(":")[0], dtype=trainer.dtype,
                              enabled=trainer.dtype != torch.float32)
    for number in range(repeats + 2):  # two warm-up passes: kernels, allocator
        if number == 2:
            synchronize(device)
            started = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
    synchronize(device)
    return repeats * per_device / (time.perf_counter() - started)


def evaluation_rate(size: str, trainer: RandomWeightTrainer, adapter: Path,
                    samples: list[dict], image_root: Path, batch_size: int,
                    max_new_tokens: int) -> float:
    """Answers/s of the evaluate stage's hf backend with the trained adapter."""
    from peft import PeftModel

    from mmgen.evaluation import Question
    from mmgen.evaluation.hf import HFEvaluator

    evaluator = HFEvaluator(model=f"random:{size}", trained=str(adapter), device=trainer.device,
                            batch_size=batch_size, max_new_tokens=max_new_tokens)
    evaluator.processor = build_processor(size)
    evaluator.tokenizer.padding_side = "left"  # as HFEvaluator.load
    evaluator.model = PeftModel.from_pretrained(trainer.base_model(), str(adapter)).eval()
    questions = [Question(s["id"], s["conversations"][0]["value"].split("\n", 1)[1], s["image_1"])
                 for s in samples]
    answers = []
    evaluator.predict(questions[:batch_size], image_root, lambda q, a: None)  # warm-up
    synchronize(evaluator.device)
    started = time.perf_counter()
    evaluator.predict(questions, image_root, lambda q, a: answers.append(a))
    synchronize(evaluator.device)
    assert len(answers) == len(questions)
    return len(questions) / (time.perf_counter() - started)


def check_learning(device: str, folder: Path) -> None:
    """A few steps on the tiny model, on `device`, lower the training loss."""
    samples = make_samples(folder, 16, seed=1)
    trainer = RandomWeightTrainer("tiny", lora={**LORA_7B, "r": 8, "alpha": 16, "dropout": 0.0},
                                  epochs=8, batch_size=8, lr=1e-2, save_every_steps=1000,
                                  log_every_steps=1, device=device, progress=False)
    trainer.train(samples, folder, folder / "check", folder / "check" / "log.jsonl")
    losses = [r["loss"] for r in read_log(folder / "check" / "log.jsonl")]
    print(f"self-check on {device}: tiny model, loss {losses[0]:.3f} -> {losses[-1]:.3f} "
          f"over {len(losses)} steps")
    if not losses[-1] < losses[0] - 0.05:  # measure anyway: the device time is spent already
        print(f"SELF-CHECK FAILED: training did not lower the loss: {losses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test)")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps of the trainer")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per step")
    parser.add_argument("--micro-batch-size", type=int, default=16, help="per forward")
    parser.add_argument("--no-checkpointing", action="store_true",
                        help="keep activations (faster, much more memory)")
    parser.add_argument("--eval-samples", type=int, default=128)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    size, device = ("tiny", "cpu") if args.tiny else ("llava-1.5-7b", resolve_device("auto"))
    if args.tiny:
        args.steps, args.batch_size, args.micro_batch_size = 6, 8, 8
        args.eval_samples, args.eval_batch_size, args.max_new_tokens = 16, 8, 8
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        check_learning(device, folder)
        samples = make_samples(folder, args.steps * args.batch_size)
        trainer = RandomWeightTrainer(
            size, lora=LORA_7B, max_steps=args.steps, epochs=1, batch_size=args.batch_size,
            micro_batch_size=args.micro_batch_size, lr=2e-4, save_every_steps=10**6,
            log_every_steps=1, device=device, progress=False, num_workers=2,
            gradient_checkpointing=not args.no_checkpointing)
        name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
        print(f"model {size} on {device} ({name}), {trainer.dtype}, LoRA r={LORA_7B['r']}, "
              f"{args.batch_size} samples per step in micro batches of {args.micro_batch_size}, "
              f"activation checkpointing {'on' if trainer.gradient_checkpointing else 'off'}")
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        out = folder / "train"
        stats = trainer.train(samples, folder, out, out / "log.jsonl")
        trained = steady_rate(out / "log.jsonl", args.batch_size, warmup_steps=2)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        raw = raw_rate(trainer, samples, folder, repeats=max(2, args.steps // 2))
        tokens = AnswerOnlyCollator(trainer.encoder(), folder)(samples[:8])["attention_mask"]
        print(f"{stats['trainable_params'] / 1e6:.1f} M trainable parameters; "
              f"{tokens.sum().item() / len(tokens):.0f} tokens per sample")
        print(f"  trainer   {trained:8.2f} samples/s  (HFTrainer.train over image files, after "
              f"2 warm-up steps; {stats['samples_per_s']:.2f} with them)")
        print(f"  raw       {raw:8.2f} samples/s  (forward + backward of an encoded batch on the "
              "device: the baseline)")
        print(f"  ratio trainer / raw: {trained / raw:.2f}")
        if peak is not None:
            print(f"  peak GPU memory while training {peak:.1f} GiB; 75K samples (the paper's "
                  f"filtered ChartQA set) would take {75_000 / trained / 3600:.2f} h per epoch")
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        try:
            rate = evaluation_rate(size, trainer, out, make_samples(folder, args.eval_samples, 7),
                                   folder, args.eval_batch_size, args.max_new_tokens)
            print(f"  evaluate  {rate:8.2f} answers/s  (HFEvaluator with the adapter, batch "
                  f"{args.eval_batch_size}, {args.max_new_tokens} new tokens each)")
        except ImportError as err:
            print(f"  evaluate  skipped: {err}")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
