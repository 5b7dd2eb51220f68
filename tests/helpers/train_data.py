"""A tiny demo domain with a training split, and a filtered.json/data.json written from it."""
from __future__ import annotations

import json
from pathlib import Path

TRAIN_DEMO = {"reference": {"bar": 2, "line": 2, "pie": 2}, "eval": {"bar": 2, "line": 2, "pie": 2},
              "train": {"bar": 4, "line": 3, "pie": 3}, "pool": {}}


def build_train_demo(root: Path) -> Path:
    """A demo domain of 12 eval and 20 training questions (about a second to build)."""
    from mmgen.demo.build import build_demo

    build_demo(root, seed=0, counts=TRAIN_DEMO, eval_questions=2, train_questions=2)
    return root


def write_generated(out_dir: Path, root: Path, name: str, count: int) -> Path:
    """`name` (filtered.json or data.json) in out_dir: `count` of the demo's training samples,
    with the absolute image_folder a generate run writes."""
    samples = json.loads((root / "train.json").read_text())["samples"][:count]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps({"image_folder": str(root), "samples": samples}))
    return path
