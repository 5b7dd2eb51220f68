"""Train the demo domain's tiny CLIP from scratch on freshly drawn demo images (CPU, minutes).

    python -m mmgen.demo.train_tiny_clip [--steps 1500] [--per-kind 600] [--threads 1]

Images of every kind (bar/pie/line charts, maps, shapes, noise, tables) are drawn with seeds no
demo build uses. Captions put kind names into prompt templates ("a photo of a bar chart.").
Contrastive loss with in-batch targets where every same-kind pair counts as a positive. Writes
the fp16 state_dict to mmgen/demo/assets/tiny_clip.pt and a training record beside it.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mmgen.demo.charts import KINDS
from mmgen.demo.kinds import draw
from mmgen.demo.tiny_clip import (
    CHECKPOINT_PATH,
    KIND_KEYWORDS,
    MODEL_NAME,
    TEMPLATES,
    TRAINING_RECORD_PATH,
    register,
    zero_shot,
)

log = logging.getLogger("mmgen.demo.train_tiny_clip")
# names a caption may use for each kind; the first is the zero-shot keyword
CAPTION_NAMES = {
    "bar": ["bar chart", "bar graph", "bar plot", "chart with bars"],
    "pie": ["pie chart", "pie graph", "donut of slices"],
    "line": ["line chart", "line graph", "line plot", "chart with a line"],
    "map": ["map", "town map", "map with named places"],
    "shapes": ["shapes", "geometric shapes", "shapes scene", "circles squares and triangles"],
    "noise": ["noise", "blurry photo", "photo-like noise", "texture"],
    "table": ["table", "data table", "table of numbers", "spreadsheet"],
}
TRAIN_TEMPLATES = TEMPLATES + ("a {} image.", "an example of a {}.", "this is a {}.")


def draw_bank(per_kind: int, seed: str, preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed pixels and kind indices for `per_kind` fresh images of every kind."""
    pixels, kinds = [], []
    for kind_index, kind in enumerate(KINDS):
        for index in range(per_kind):
            image, _ = draw(kind, random.Random(f"tiny-clip:{seed}:{kind}:{index}"))
            pixels.append(preprocess(image))
            kinds.append(kind_index)
    return torch.stack(pixels), torch.tensor(kinds)


def caption_bank(tokenizer) -> tuple[torch.Tensor, list[list[int]]]:
    """Tokens of every caption, and per kind the caption row indices."""
    captions, rows_by_kind = [], []
    for kind in KINDS:
        rows_by_kind.append([])
        for name in CAPTION_NAMES[kind]:
            for template in TRAIN_TEMPLATES:
                rows_by_kind[-1].append(len(captions))
                captions.append(template.format(name))
    return tokenizer(captions), rows_by_kind


def same_kind_loss(model, pixels: torch.Tensor, tokens: torch.Tensor,
                   kinds: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss whose targets spread evenly over same-kind pairs."""
    image = F.normalize(model.encode_image(pixels), dim=-1)
    text = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * image @ text.T
    same = (kinds[:, None] == kinds[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)  # symmetric, so it serves both directions
    image_loss = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    text_loss = -(targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (image_loss + text_loss) / 2


def accuracy(model, tokenizer, pixels: torch.Tensor, kinds: torch.Tensor) -> float:
    """Zero-shot accuracy over the kind keywords."""
    model.eval()
    keywords = [KIND_KEYWORDS[kind] for kind in KINDS]
    predicted = torch.cat([zero_shot(model, tokenizer, chunk, keywords)
                           for chunk in pixels.split(256)])
    model.train()
    return (predicted == kinds).float().mean().item()


def train(steps: int, per_kind: int, batch_size: int, lr: float, seed: int, threads: int,
          out: Path, held_out_per_kind: int = 30) -> dict:
    """Train from scratch, save the fp16 checkpoint to `out`; returns the training record."""
    import open_clip

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    register()
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    started = time.perf_counter()
    pixels, kinds = draw_bank(per_kind, f"train{seed}", preprocess)
    held_pixels, held_kinds = draw_bank(held_out_per_kind, f"heldout{seed}", preprocess)
    tokens, rows_by_kind = caption_bank(tokenizer)
    drawn_s = time.perf_counter() - started
    log.info("drew %d training and %d held-out images in %.1f s", len(kinds), len(held_kinds),
             drawn_s)
    # captions use a few dozen of the 49408 tokens: the random token embedding stays fixed, which
    # halves the step time (the optimizer would spend it on rows no caption uses)
    model.token_embedding.weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup)
        * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(1, steps + 1):
        batch = torch.randint(len(kinds), (batch_size,), generator=generator)
        batch_kinds = kinds[batch]
        caption_rows = [rows[torch.randint(len(rows), (1,), generator=generator).item()]
                        for rows in (rows_by_kind[k] for k in batch_kinds.tolist())]
        loss = same_kind_loss(model, pixels[batch], tokens[caption_rows], batch_kinds)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == steps:
            log.info("step %d/%d loss %.3f held-out accuracy %.3f (%.0f s)", step, steps,
                     loss.item(), accuracy(model, tokenizer, held_pixels, held_kinds),
                     time.perf_counter() - started)
    train_s = time.perf_counter() - started
    held_out = accuracy(model, tokenizer, held_pixels, held_kinds)
    state = {key: value.half() if value.is_floating_point() else value
             for key, value in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    record = {"model": MODEL_NAME, "checkpoint": out.name, "steps": steps,
              "batch_size": batch_size, "lr": lr, "optimizer": "AdamW, warmup + cosine",
              "images_per_kind": per_kind, "kinds": list(KINDS), "seed": seed,
              "threads": threads, "drawing_s": round(drawn_s, 1), "wall_s": round(train_s, 1),
              "held_out_accuracy": round(held_out, 4), "held_out_images": len(held_kinds),
              "parameters": sum(p.numel() for p in model.parameters()),
              "trained_parameters": sum(p.numel() for p in trainable),
              "checkpoint_bytes": out.stat().st_size, "torch": torch.__version__,
              "load_average_1m": round(os.getloadavg()[0], 1),  # wall time depends on it
              "cpu": platform.processor() or platform.machine()}
    log.info("saved %s (%d bytes) after %.0f s; held-out zero-shot accuracy %.3f", out,
             record["checkpoint_bytes"], train_s, held_out)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps")
    parser.add_argument("--per-kind", type=int, default=600, help="training images per kind")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    # one thread: on a shared 2-core machine two threads mostly wait for each other
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_PATH, help="checkpoint path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    record = train(args.steps, args.per_kind, args.batch_size, args.lr, args.seed, args.threads,
                   args.out)
    if args.out == CHECKPOINT_PATH:
        TRAINING_RECORD_PATH.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
