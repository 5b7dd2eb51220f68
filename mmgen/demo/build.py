"""Build the offline demo domain: a chart reference set, an unlabelled pool, an eval set, truth.

Layout under `data_dir` (DESIGN.md "Offline demo domain"):
  reference.json + reference/<kind>_NNN.png   charts with one truthful Q/A each
  eval.json + eval/<kind>_NNN.png             held-out charts, same format, several questions each
  train.json + train/<kind>_NNN.png           the domain's own training set (the skyline), same
                                              format; its charts are in no other split
  pool/img_NNNNN.png                          charts and distractors; names hide the kind
  truth.json                                  {path relative to data_dir: {kind, title, data}}
Same seed, same bytes. reference.json is written last, so its presence means a finished build.
"""
from __future__ import annotations

import io
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock
from omegaconf import MISSING

from mmgen.contracts import write_json
from mmgen.demo.charts import CHART_KINDS, KINDS, make_qa
from mmgen.demo.kinds import draw

log = logging.getLogger(__name__)
SPLITS = ("reference", "eval", "train", "pool")

DESCRIPTION = ("Chart question answering on bar, pie and line charts: read printed values, "
               "compare categories, and follow trends over time.")
DEFAULT_COUNTS = {
    "reference": {"bar": 30, "line": 24, "pie": 18},
    "eval": {"bar": 40, "line": 35, "pie": 30},
    "train": {"bar": 60, "line": 50, "pie": 40},
    "pool": {"bar": 150, "line": 126, "pie": 108, "map": 80, "shapes": 64, "noise": 56,
             "table": 56},
}


@dataclass
class DemoBuildConfig:
    """Schema of conf/demo_build.yaml (python -m mmgen.demo)."""
    data_dir: str = MISSING  # folder to write the demo domain into (created if missing)
    seed: int = 0  # same seed, same bytes
    eval_questions: int = 3  # questions per eval chart
    train_questions: int = 2  # questions per training-set chart
    # images per split and kind: reference/eval take chart kinds, pool any kind
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {split: dict(kinds) for split, kinds in DEFAULT_COUNTS.items()})


def image_rng(seed: int, *parts: object) -> random.Random:
    """A generator owned by one image, so each image depends only on the seed and its name."""
    return random.Random(":".join(["mmgen-demo", str(seed), *map(str, parts)]))


def check_counts(counts: dict) -> dict:
    """Fail naming the key if a split is missing or unknown, or a kind or count is bad."""
    for split in ("reference", "eval", "pool"):  # train is optional: train.json stays empty
        if split not in counts:
            raise ValueError(f"demo counts: missing split '{split}' (expected reference, eval, pool)")
    for split, numbers in counts.items():
        if split not in SPLITS:
            raise ValueError(f"demo counts.{split}: unknown split; use {', '.join(SPLITS)}")
        allowed = KINDS if split == "pool" else CHART_KINDS
        for kind, number in numbers.items():
            if kind not in allowed:
                raise ValueError(f"demo counts.{split}.{kind}: unknown kind; use one of "
                                 f"{', '.join(allowed)}")
            if not isinstance(number, int) or number < 0:
                raise ValueError(f"demo counts.{split}.{kind}: {number!r} is not a count >= 0")
    return counts


def _save_png(image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # Pillow writes no timestamps: same pixels, same bytes
    path.write_bytes(buffer.getvalue())


def _conversation(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


def _chart_split(root: Path, split: str, counts: dict, seed: int, questions: int,
                 truth: dict) -> list[dict]:
    """Draw one split's charts; one sample per question, image names like reference/bar_000.png."""
    samples = []
    for kind in CHART_KINDS:
        for index in range(counts.get(kind, 0)):
            name = f"{kind}_{index:03d}"
            image, entry = draw(kind, image_rng(seed, split, name))
            relative = f"{split}/{name}.png"
            _save_png(image, root / relative)
            truth[relative] = entry
            items = make_qa(entry, image_rng(seed, split, name, "qa"), questions)
            for number, qa in enumerate(items):
                sample_id = name if questions == 1 else f"{name}_q{number}"
                samples.append({"id": sample_id, "image_1": relative,
                                "conversations": _conversation(qa["Q"], qa["A"])})
    return samples


def _pool(root: Path, counts: dict, seed: int, truth: dict) -> int:
    """Draw the pool in a seeded shuffled order so file names say nothing about the kind."""
    kinds = [kind for kind in KINDS for _ in range(counts.get(kind, 0))]
    image_rng(seed, "pool-order").shuffle(kinds)
    for index, kind in enumerate(kinds):
        relative = f"pool/img_{index:05d}.png"
        image, entry = draw(kind, image_rng(seed, "pool", index, kind))
        _save_png(image, root / relative)
        truth[relative] = entry
    return len(kinds)


def _remove_stale(root: Path, written: set[str]) -> None:
    """Delete images a previous build left behind that this build did not write."""
    for folder in SPLITS:
        for path in (root / folder).glob("*.png"):
            if path.relative_to(root).as_posix() not in written:
                path.unlink()


def build_demo(data_dir: str | Path, seed: int = 0, counts: dict | None = None,
               eval_questions: int = 3, train_questions: int = 2) -> dict:
    """Write the demo domain under `data_dir`; returns what was written (counts per split/kind)."""
    started = time.perf_counter()
    root = Path(data_dir)
    counts = check_counts(counts or DEFAULT_COUNTS)
    for folder in SPLITS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "reference.json").unlink(missing_ok=True)  # absent until the build has finished
    truth: dict[str, dict] = {}
    reference = _chart_split(root, "reference", counts["reference"], seed, 1, truth)
    evaluation = _chart_split(root, "eval", counts["eval"], seed, eval_questions, truth)
    training = _chart_split(root, "train", counts.get("train", {}), seed, train_questions, truth)
    pool_size = _pool(root, counts["pool"], seed, truth)
    _remove_stale(root, set(truth))
    write_json(root / "truth.json", truth, indent=None)
    write_json(root / "eval.json", {"image_folder": "", "dataset_description": DESCRIPTION,
                                    "samples": evaluation})
    write_json(root / "train.json", {"image_folder": "", "dataset_description": DESCRIPTION,
                                     "samples": training})
    write_json(root / "reference.json", {"image_folder": "", "dataset_description": DESCRIPTION,
                                         "samples": reference})
    pool_kinds = {kind: n for kind, n in counts["pool"].items() if n}
    summary = {"data_dir": str(root), "seed": seed, "reference_samples": len(reference),
               "eval_samples": len(evaluation), "train_samples": len(training),
               "pool_images": pool_size,
               "pool_kinds": pool_kinds, "images": len(truth),
               "wall_s": round(time.perf_counter() - started, 2)}
    log.info("wrote %s: reference.json (%d samples), eval.json (%d samples), train.json (%d "
             "samples), pool/ (%d images: %s), truth.json (%d entries) in %.1f s", root,
             len(reference), len(evaluation), len(training), pool_size,
             ", ".join(f"{n} {kind}" for kind, n in pool_kinds.items()), len(truth),
             summary["wall_s"])
    return summary


def _built(root: Path) -> bool:
    """A finished build of this version: builds without train.json predate the larger eval set."""
    return (root / "reference.json").is_file() and (root / "train.json").is_file()


def ensure_demo_data(root: str | Path, seed: int = 0) -> Path:
    """Build the demo domain under `root` unless it is already there; safe for parallel callers."""
    root = Path(root)
    if _built(root):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".build.lock")):
        if not _built(root):  # another process may have built it meanwhile
            log.info("demo data missing under %s; building it (seed %d)", root, seed)
            build_demo(root, seed)
    return root
