"""Training samples and images for the hf trainer tests, and the LoRA shape they use."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

LANGUAGE_MODEL_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
ANSWERS = ["42", "Apples have the largest share", "three", "Oslo"]
TINY_LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": LANGUAGE_MODEL_LINEARS}


def sample(index: int, image: bool = True) -> dict:
    """Sample `index`: a question about image `index` (or none) whose answer cycles ANSWERS."""
    record = {"id": f"s{index}", "conversations": [
        {"from": "human", "value": f"<image>\nWhat does chart {index % 2} show?"},
        {"from": "gpt", "value": ANSWERS[index % len(ANSWERS)]}]}
    if image:
        record["image_1"] = f"{index}.png"
    return record


# seven chart questions and one text-only question (as tqa rows sit among vqa rows)
SAMPLES = [sample(index) for index in range(7)] + [sample(7, image=False)]


def write_images(root: Path, count: int = 7) -> Path:
    """`count` random RGB images of different sizes, 0.png, 1.png..., in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 255, (30 + 6 * index, 60 - 4 * index, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{index}.png")
    return root
