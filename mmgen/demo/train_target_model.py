"""Train the demo's base target model on material other than the demo's task.

    python -m mmgen.demo.train_target_model            # writes mmgen/demo/assets/target_base.pt

It plays LLaVA-1.5-7B before fine-tuning: it has seen images and short answers, but never a
question about a chart. It learns the distractors' own questions (maps, shape scenes, tables,
noise) and plain captions of every kind of image, charts included ("Describe the image." ->
'A bar chart titled "..."'). The images are drawn with a seed that `build_demo` never uses, so
it has seen none of the images it later scores or answers about. It prints the held-out loss on
correct answers and on shuffled answers of that material.
"""
from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

import torch

from mmgen.demo.charts import CHART_KINDS, make_qa
from mmgen.demo.kinds import draw
from mmgen.demo.target_model import (
    CHECKPOINT,
    TinyVQA,
    encode_batch,
    image_tensor,
    save_target_model,
    sequence_losses,
)

log = logging.getLogger(__name__)
# how often each kind is drawn: the non-chart kinds carry the questions, so they dominate
KIND_WEIGHTS = {"map": 2, "shapes": 2, "table": 2, "noise": 1, "bar": 1, "pie": 1, "line": 1}
CAPTION_QUESTIONS = ("Describe the image.", "What does this image show?",
                     "Write a short caption for this image.", "What kind of image is this?")


def caption(entry: dict) -> str:
    """A plain one-line caption: what kind of image it is and its title, nothing read off it."""
    kind = entry["kind"]
    if kind in CHART_KINDS:
        return f'A {kind} chart titled "{entry["title"]}".'
    if kind in ("map", "table"):
        return f'A {kind} titled "{entry["title"]}".'
    if kind == "shapes":
        shapes = sorted({o["shape"] for o in entry["data"]["objects"]})
        return f"Flat {' and '.join(s + 's' for s in shapes)} on a plain background."
    return "A blurry photo-like texture."


def questions_for(entry: dict, rng: random.Random, per_image: int) -> list[tuple[str, str]]:
    """One caption per image, plus the image's own questions unless it is a chart."""
    pairs = [(rng.choice(CAPTION_QUESTIONS), caption(entry))]
    if entry["kind"] not in CHART_KINDS:
        pairs += [(qa["Q"], qa["A"]) for qa in make_qa(entry, rng, per_image - 1)]
    return pairs


def make_examples(num_images: int, questions_per_image: int,
                  seed: int) -> tuple[torch.Tensor, list]:
    """Images as a uint8 tensor and (image index, question, answer) triples."""
    rng = random.Random(seed)
    kinds = [kind for kind, weight in KIND_WEIGHTS.items() for _ in range(weight)]
    images, examples = [], []
    for index in range(num_images):
        image, entry = draw(rng.choice(kinds), rng)
        images.append(((image_tensor(image) + 1.0) * 127.5).round().to(torch.uint8))
        examples += [(index, q, a) for q, a in questions_for(entry, rng, questions_per_image)]
    return torch.stack(images), examples


def batch_losses(model: TinyVQA, images: torch.Tensor, examples: list) -> torch.Tensor:
    """Per-example mean answer loss for a list of (image index, question, answer)."""
    indices, questions, answers = zip(*examples)
    pixels = images[list(indices)].float() / 127.5 - 1.0
    encoded = encode_batch(list(questions), list(answers))
    logits = model(pixels, encoded["question"], encoded["decoder_input"])
    return sequence_losses(logits, encoded["target"])


@torch.no_grad()
def evaluate(model: TinyVQA, images: torch.Tensor, examples: list, seed: int = 0) -> dict:
    """Mean loss on correct answers and on the same answers shuffled across examples."""
    model.eval()
    answers = [answer for _, _, answer in examples]
    random.Random(seed).shuffle(answers)
    shuffled = [(i, q, a) for (i, q, _), a in zip(examples, answers)]
    correct_loss = torch.cat([batch_losses(model, images, examples[s:s + 256])
                              for s in range(0, len(examples), 256)]).mean().item()
    shuffled_loss = torch.cat([batch_losses(model, images, shuffled[s:s + 256])
                               for s in range(0, len(shuffled), 256)]).mean().item()
    model.train()
    return {"correct": round(correct_loss, 4), "shuffled": round(shuffled_loss, 4)}


def train(num_images: int, questions: int, epochs: int, batch_size: int, lr: float,
          seed: int) -> tuple[TinyVQA, dict]:
    """Train a fresh TinyVQA; returns it and its training record."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    images, examples = make_examples(num_images, questions, seed)
    val_images, val_examples = make_examples(max(200, num_images // 10), questions,
                                             seed + 1)
    log.info("drew %d images, %d examples in %.0f s", len(images), len(examples),
             time.perf_counter() - started)
    model = TinyVQA()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * ((len(examples) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    order_rng = random.Random(seed)
    for epoch in range(epochs):
        order_rng.shuffle(examples)
        total = 0.0
        for start in range(0, len(examples), batch_size):
            loss = batch_losses(model, images, examples[start:start + batch_size]).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(examples[start:start + batch_size])
        held_out = evaluate(model, val_images, val_examples)
        log.info("epoch %d: train loss %.3f, held-out correct %.3f vs shuffled %.3f (%.0f s)",
                 epoch + 1, total / len(examples), held_out["correct"], held_out["shuffled"],
                 time.perf_counter() - started)
    record = {"images": num_images, "examples": len(examples), "epochs": epochs, "seed": seed,
              "material": "maps, shapes, tables, noise: their questions; all kinds: captions",
              "held_out": held_out, "train_seconds": round(time.perf_counter() - started, 1),
              "parameters": sum(p.numel() for p in model.parameters())}
    return model.eval(), record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2500, help="training images to draw")
    parser.add_argument("--questions", type=int, default=3,
                        help="examples per non-chart image (one caption, the rest questions)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=7919, help="never a build_demo seed")
    # one thread: on a shared 2-core machine a second thread's hand-offs cost more than it adds
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    model, record = train(args.images, args.questions, args.epochs, args.batch_size, args.lr, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_target_model(model, args.out, record)
    log.info("saved %s (%.1f MB): %s", args.out, args.out.stat().st_size / 1e6, record)


if __name__ == "__main__":
    main()
