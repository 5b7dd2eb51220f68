"""A small eval set on disk and a random demo target model, for the evaluate tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# (id, split, question, answer): numbers, labels and a yes/no, over two splits of unequal size
EVAL_SAMPLES = [
    ("q0", "human", "What is the value of Paris?", "25.2"),
    ("q1", "human", "Which bar is the tallest?", "Paris"),
    ("q2", "human", "How many bars are there?", "6"),
    ("q3", "augmented", "What is the total?", "1234"),
    ("q4", "augmented", "What share does Food take?", "45%"),
    ("q5", "augmented", "Is Rural higher than City?", "No"),
    ("q6", "augmented", "Which month is lowest?", "Aug"),
    ("q7", "augmented", "What was the value in May?", "0.5"),
]


def write_eval_set(root: Path, samples=EVAL_SAMPLES, **extra_fields) -> Path:
    """Images img/<id>.png (random colours) and eval.json in the reference-set format."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    records = []
    for sample_id, split, question, answer in samples:
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img" / f"{sample_id}.png")
        record = {"id": sample_id, "image_1": f"{sample_id}.png", "split": split,
                  "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                    {"from": "gpt", "value": answer}]}
        records.append({**record, **extra_fields.get(sample_id, {})})
    path = root / "eval.json"
    path.write_text(json.dumps({"image_folder": "img", "dataset_description": "test charts",
                                "samples": records}))
    return path


def save_random_demo_model(path: Path, seed: int = 0) -> Path:
    """A demo target model with random weights (its answers are garbage, but deterministic)."""
    import torch

    from mmgen.demo.target_model import TinyVQA, save_target_model

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_target_model(TinyVQA(), path, {"seed": seed})
    return path
