"""The tiny CLIP of the demo domain: an open_clip model config plus a committed checkpoint.

`register()` makes `mmgen-tiny-clip` known to open_clip, so the model loads through the same call
as any open_clip model:
    open_clip.create_model_and_transforms("mmgen-tiny-clip", pretrained=register())
It was trained by `python -m mmgen.demo.train_tiny_clip` on freshly drawn demo images; it knows
bar/pie/line charts, maps, shape scenes, photo-like noise and tables, and nothing else.
"""
from __future__ import annotations

from pathlib import Path

import torch

MODEL_NAME = "mmgen-tiny-clip"
ASSETS = Path(__file__).resolve().parent / "assets"
CONFIG_PATH = ASSETS / f"{MODEL_NAME}.json"  # open_clip names a model after its file's stem
CHECKPOINT_PATH = ASSETS / "tiny_clip.pt"  # fp16 state_dict
TRAINING_RECORD_PATH = ASSETS / "tiny_clip_training.json"  # how and how long it was trained
# the keyword per demo image kind, as a task's keyword list would name it
KIND_KEYWORDS = {"bar": "bar chart", "pie": "pie chart", "line": "line chart", "map": "map",
                 "shapes": "shapes", "noise": "noise", "table": "table"}
# prompt templates averaged for zero-shot text embeddings (as the retrieval stage does)
TEMPLATES = ("a photo of a {}.", "a {}.", "an image of a {}.", "a picture of a {}.", "{}",
             "a drawing of a {}.", "a rendering of a {}.")


def register() -> str:
    """Add the `mmgen-tiny-clip` model config to open_clip; returns the checkpoint path."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_PATH)
    return str(CHECKPOINT_PATH)


@torch.no_grad()
def text_embeddings(model, tokenizer, keywords: list[str],
                    templates: tuple[str, ...] = TEMPLATES) -> torch.Tensor:
    """One unit vector per keyword: the normalised mean over prompt templates."""
    rows = []
    for keyword in keywords:
        tokens = tokenizer([template.format(keyword) for template in templates])
        embedded = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)
        rows.append(torch.nn.functional.normalize(embedded.mean(0), dim=-1))
    return torch.stack(rows)


@torch.no_grad()
def zero_shot(model, tokenizer, pixels: torch.Tensor, keywords: list[str]) -> torch.Tensor:
    """Index of the most similar keyword for each preprocessed image in `pixels`."""
    text = text_embeddings(model, tokenizer, keywords)
    image = torch.nn.functional.normalize(model.encode_image(pixels).float(), dim=-1)
    return (image @ text.T).argmax(dim=1)
