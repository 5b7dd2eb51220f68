"""Benchmark: the hf evaluation backend on a GPU, with a LLaVA-1.5-7B-shaped model.

The model is built from a config with random weights straight on the device (bf16), the
processor locally (mmgen.testing.random_models), and the questions are bar charts drawn on the
fly (gpu_filter.make_samples). Random weights never emit the end token, so every answer runs to
max_new_tokens: the worst case for a real model. It measures, in questions/s:
  - raw generate: model.generate on one batch already encoded and on the device (the baseline);
  - end to end: HFEvaluator.predict over the image files (decode, processor, generate, decode),
    the code path `python -m mmgen.evaluate evaluate=hf` runs;
and prints end to end / raw, per batch size.

    python benchmarks/gpu_evaluate.py                                  # 7B, 256 questions, batch 1,16,32
    python benchmarks/gpu_evaluate.py --size tiny --questions 24 --device cpu   # CPU smoke test
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from gpu_filter import make_samples, synchronize

from mmgen.evaluation import Question
from mmgen.evaluation.hf import HFEvaluator
from mmgen.testing.random_models import build_config, build_processor

PROMPT = "{question}\nAnswer the question using a single word or phrase."  # conf/evaluate/hf.yaml


def build_evaluator(size: str, device: str, max_new_tokens: int) -> HFEvaluator:
    """An HFEvaluator holding a random-weight model built directly on the device (no files)."""
    from transformers import LlavaForConditionalGeneration

    evaluator = HFEvaluator(model=f"random:{size}", device=device,
                            max_new_tokens=max_new_tokens)
    evaluator.processor = build_processor(size)
    evaluator.tokenizer.padding_side = "left"
    config = build_config(size, evaluator.processor.tokenizer)
    torch.manual_seed(0)
    with torch.device(evaluator.device):
        evaluator.model = LlavaForConditionalGeneration._from_config(
            config, dtype=evaluator.dtype).eval()
    return evaluator


def measure(evaluator: HFEvaluator, questions: list[Question], folder: Path) -> dict:
    """Questions/s of raw generate on one encoded batch, and of predict end to end."""
    batch = questions[:evaluator.batch_size]
    texts = [evaluator.prompt_text(q.prompt, True) for q in batch]
    from mmgen.scoring import load_image

    images = [load_image(folder, q.image) for q in batch]
    inputs = evaluator.processor(text=texts, images=images, return_tensors="pt", padding=True)
    inputs = {k: (v.to(evaluator.device, evaluator.dtype) if torch.is_floating_point(v)
                  else v.to(evaluator.device)) for k, v in inputs.items() if torch.is_tensor(v)}

    def generate():
        return evaluator.model.generate(**inputs, do_sample=False,
                                        max_new_tokens=evaluator.max_new_tokens,
                                        pad_token_id=evaluator.tokenizer.pad_token_id)

    with torch.inference_mode():
        generate()  # warm-up: kernels, allocator
        synchronize(evaluator.device)
        repeats = max(1, len(questions) // len(batch))
        started = time.perf_counter()
        for _ in range(repeats):
            new_tokens = generate().shape[1] - inputs["input_ids"].shape[1]
        synchronize(evaluator.device)
        raw = repeats * len(batch) / (time.perf_counter() - started)
    answers: list[str] = []
    started = time.perf_counter()
    evaluator.predict(questions, folder, lambda question, text: answers.append(text))
    synchronize(evaluator.device)
    end_to_end = len(questions) / (time.perf_counter() - started)
    assert len(answers) == len(questions)
    return {"raw": raw, "end_to_end": end_to_end, "new_tokens": new_tokens,
            "prompt_tokens": int(inputs["attention_mask"].sum()) / len(batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="llava-1.5-7b", choices=["llava-1.5-7b", "tiny"])
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--batch-sizes", default="1,16,32", help="comma-separated")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="lmms-eval's ChartQA")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        samples = make_samples(folder, args.questions)
        questions = [Question(s["id"], PROMPT.replace("{question}", s["conversations"][0][
            "value"].removeprefix("<image>\n")), s["image_1"]) for s in samples]
        evaluator = build_evaluator(args.size, args.device, args.max_new_tokens)
        name = torch.cuda.get_device_name() if evaluator.device.startswith("cuda") else "cpu"
        parameters = sum(p.numel() for p in evaluator.model.parameters())
        print(f"model {args.size}: {parameters / 1e9:.2f} B parameters, {evaluator.dtype}, on "
              f"{evaluator.device} ({name}); ready after {time.perf_counter() - started:.1f} s")
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            evaluator.batch_size = batch_size
            result = measure(evaluator, questions, folder)
            print(f"\nbatch {batch_size}, {len(questions)} questions, {result['prompt_tokens']:.0f}"
                  f" prompt tokens, {result['new_tokens']} new tokens each")
            print(f"  raw generate  {result['raw']:8.2f} questions/s  (encoded batch on the device)")
            print(f"  end to end    {result['end_to_end']:8.2f} questions/s  (HFEvaluator.predict "
                  "over image files)")
            print(f"  ratio end to end / raw generate: {result['end_to_end'] / result['raw']:.2f}")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
