"""Benchmark: the filter's Hugging Face scorer on a GPU, with a LLaVA-1.5-7B-shaped model.

Nothing is downloaded: the model is built from a config with random weights (bf16, straight on
the device), the tokenizer and processor are built locally (mmgen.testing.random_models), and the
samples are bar charts drawn on the fly with truthful Q/A. It needs torch, transformers,
tokenizers and Pillow only (what the GPU machine's image has). It measures, in samples/s:
  - end to end: HFScorer.score over the image files (decode, processor, tokenise, forward,
    masked answer loss), the code path `python -m mmgen.filter filter=llava_1_5_7b` runs;
  - raw forward: the model on one batch already encoded and on the device (the baseline);
  - encode only: the CPU side alone (PIL decode + processor + tokeniser).
and prints end to end / raw. Random weights change no timing: the work per token is the same.

    python benchmarks/gpu_filter.py                  # llava-1.5-7b, bf16, 512 samples, batch 16, 32
    python benchmarks/gpu_filter.py --size tiny --samples 32 --device cpu   # CPU smoke test

It first checks, on a tiny model saved and loaded through from_pretrained, that the scorer's
losses on the device match CPU float32 (float32 within 1e-3, bfloat16 within 5e-2).
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from mmgen.scoring import resolve_device
from mmgen.scoring.hf import HFScorer
from mmgen.testing.random_models import build_config, build_processor

LABELS = ["Apples", "Pears", "Plums", "Cherries", "Grapes", "Lagos", "Lima", "Oslo", "Cairo",
          "Solar", "Wind", "Hydro", "Chess", "Drama", "Choir"]


def make_samples(folder: Path, count: int, seed: int = 0) -> list[dict]:
    """`count` samples over count // 3 bar charts (3 questions each, like caps_per_image=3),
    drawn here with Pillow at the demo's sizes so the script needs only torch + transformers."""
    rng = random.Random(seed)
    samples = []
    for index in range((count + 2) // 3):
        width, height = rng.choice(range(224, 321, 16)), rng.choice(range(224, 321, 16))
        image = Image.new("RGB", (width, height), "white")
        canvas = ImageDraw.Draw(image)
        labels = rng.sample(LABELS, rng.randint(3, 7))
        values = [rng.randint(5, 95) for _ in labels]
        canvas.text((8, 4), "Fruit harvest (tons)", fill="black")
        step = (width - 20) / len(labels)
        for number, (label, value) in enumerate(zip(labels, values)):
            left, top = 10 + number * step, height - 30 - value * (height - 60) / 100
            canvas.rectangle([left + 3, top, left + step - 3, height - 30],
                             fill=tuple(rng.randint(30, 220) for _ in range(3)))
            canvas.text((left + 3, top - 12), str(value), fill="black")
            canvas.text((left + 3, height - 24), label[:6], fill="black")
        name = f"chart_{index:05d}.png"
        image.save(folder / name)
        best = labels[values.index(max(values))]
        first, second = rng.sample(range(len(labels)), 2)
        qa = [(f"What is the value of {labels[first]} in the chart?", str(values[first])),
              ("Which bar has the highest value?", best),
              (f"What is the difference between {labels[first]} and {labels[second]}?",
               str(abs(values[first] - values[second])))]
        for number, (question, answer) in enumerate(qa):
            samples.append({"id": f"{index}-{number}", "image_1": name, "conversations": [
                {"from": "human", "value": f"<image>\n{question}"},
                {"from": "gpt", "value": answer}]})
    return samples[:count]


def build_scorer(size: str, device: str, dtype: str, batch_size: int) -> HFScorer:
    """An HFScorer holding a random-weight model built directly on the device (no files)."""
    from transformers import LlavaForConditionalGeneration

    scorer = HFScorer(model=f"random:{size}", dtype=dtype, device=device, batch_size=batch_size)
    scorer.processor = build_processor(size)
    config = build_config(size, scorer.processor.tokenizer)
    torch.manual_seed(0)
    with torch.device(scorer.device):  # weights are created on the GPU, in the scoring dtype
        scorer.model = LlavaForConditionalGeneration._from_config(config, dtype=scorer.dtype).eval()
    return scorer


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check_against_cpu(device: str, folder: Path) -> None:
    """The scorer's losses on `device` match CPU float32, for a tiny model from_pretrained."""
    from mmgen.testing.random_models import save_random_llava

    model_dir = save_random_llava(folder / "tiny", size="tiny")
    samples = make_samples(folder, 24, seed=1)
    reference = HFScorer(model=str(model_dir), device="cpu", batch_size=8).score(samples, folder)
    for dtype, tolerance in (("float32", 1e-3), ("bfloat16", 5e-2)):
        losses = HFScorer(model=str(model_dir), device=device, dtype=dtype,
                          batch_size=8).score(samples, folder)
        worst = max(abs(a - b) for a, b in zip(losses, reference))
        print(f"self-check on {device}, {dtype}: largest difference from CPU float32 {worst:.2e}")
        assert worst < tolerance, f"{dtype} losses on {device} differ from CPU by {worst}"


def measure(scorer: HFScorer, samples: list[dict], folder: str) -> dict:
    """Samples/s for the raw forward (baseline), the CPU encode alone, and end to end."""
    batch = samples[:scorer.batch_size]
    encoded = scorer.encode(batch, folder)
    scorer.forward(encoded)  # warm-up: kernels, allocator
    synchronize(scorer.device)
    repeats = max(1, len(samples) // scorer.batch_size)
    t0 = time.perf_counter()
    for _ in range(repeats):
        scorer.forward(encoded)
    synchronize(scorer.device)
    raw = repeats * len(batch) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, len(samples), scorer.batch_size):
        scorer.encode(samples[start:start + scorer.batch_size], folder)
    encode_only = len(samples) / (time.perf_counter() - t0)
    if scorer.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    losses = scorer.score(samples, folder)
    synchronize(scorer.device)
    end_to_end = len(samples) / (time.perf_counter() - t0)
    assert len(losses) == len(samples) and all(math.isfinite(x) for x in losses), "NaN loss"
    return {"raw": raw, "encode": encode_only, "end_to_end": end_to_end,
            "tokens": int(encoded["attention_mask"].sum()) / len(batch),
            "answer_tokens": int((encoded["labels"] != -100).sum()) / len(batch),
            "mean_loss": sum(losses) / len(losses),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30
            if scorer.device.startswith("cuda") else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="llava-1.5-7b", choices=["llava-1.5-7b", "tiny"])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-sizes", default="16,32", help="comma-separated")
    parser.add_argument("--dtype", default="auto", help="auto | bfloat16 | float16 | float32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-check", action="store_true", help="skip the tiny-model self-check")
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_check:
            check_against_cpu(resolve_device(args.device), Path(folder))
        scorer = build_scorer(args.size, args.device, args.dtype, 1)
        parameters = sum(p.numel() for p in scorer.model.parameters())
        synchronize(scorer.device)
        name = torch.cuda.get_device_name() if scorer.device.startswith("cuda") else "cpu"
        print(f"model {args.size}: {parameters / 1e9:.2f} B parameters, {scorer.dtype}, on "
              f"{scorer.device} ({name}); ready after {time.perf_counter() - started:.1f} s")
        samples = make_samples(Path(folder), args.samples)
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            scorer.batch_size = batch_size
            result = measure(scorer, samples, folder)
            print(f"\nbatch {batch_size}, {len(samples)} samples, {result['tokens']:.0f} tokens "
                  f"per sample ({result['answer_tokens']:.1f} answer tokens)")
            print(f"  raw forward  {result['raw']:8.1f} samples/s  (baseline: encoded batch on "
                  "the device)")
            print(f"  encode only  {result['encode']:8.1f} samples/s  (CPU: decode + processor + "
                  "tokeniser)")
            print(f"  end to end   {result['end_to_end']:8.1f} samples/s  (HFScorer.score over "
                  "image files)")
            print(f"  ratio end to end / raw forward: {result['end_to_end'] / result['raw']:.2f}")
            print(f"  mean loss {result['mean_loss']:.3f} nats (random weights: about ln(vocab))")
            if result["peak_gib"] is not None:
                hours = 150_000 / result["end_to_end"] / 3600
                print(f"  peak GPU memory {result['peak_gib']:.1f} GiB; 150K samples (the "
                      f"paper's ChartQA run) would take {hours:.2f} h on this GPU")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
