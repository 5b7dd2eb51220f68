"""Small local datasets shaped like the public benchmarks `mmgen.prepare` reads: the same
columns, feature types (datasets.Image, ClassLabel, lists) and file layout as the hub copies
(data/{split}-00000-of-00001.parquet; SpatialEval's config folders and README configs), with a
few rows of our own making."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

SHARD = "00000-of-00001"  # the hub's parquet shard naming, which keeps split names as they are


def image(seed: int, size: int = 48, kind: str = "PNG") -> bytes:
    """A small image, different for each seed."""
    canvas = Image.new("RGB", (size, size), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256))
    ImageDraw.Draw(canvas).rectangle([seed % 20, 5, seed % 20 + 12, 30], fill=(255, 255, 255))
    buffer = io.BytesIO()
    canvas.save(buffer, kind)
    return buffer.getvalue()


def cell(data: bytes) -> dict:
    """An image cell as datasets stores it in parquet."""
    return {"bytes": data, "path": None}


def write_splits(folder: Path, features, rows_by_split: dict[str, dict[str, list]],
                 subdir: str = "data") -> Path:
    """Write each split as folder/subdir/{split}-00000-of-00001.parquet with these features."""
    from datasets import Dataset

    for split, columns in rows_by_split.items():
        (folder / subdir).mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(columns, features=features).to_parquet(
            str(folder / subdir / f"{split}-{SHARD}.parquet"))
    return folder


def chartqa_features():
    """HuggingFaceM4/ChartQA's features, as its card lists them."""
    from datasets import ClassLabel, Features, Value
    from datasets import Image as ImageFeature
    from datasets import Sequence as List  # datasets 2.x: Sequence; 4+: List (the same here)

    return Features({"image": ImageFeature(), "query": Value("string"),
                     "label": List(Value("string")),
                     "human_or_machine": ClassLabel(names=["human", "machine"])})


def chartqa_rows(images: list[bytes], first: int = 0) -> dict[str, list]:
    """One question per image, alternating human / machine, answers 10, 11, ..."""
    count = len(images)
    return {"image": [cell(data) for data in images],
            "query": [f"What is the value of bar {first + i}?" for i in range(count)],
            "label": [[str(10 + first + i)] for i in range(count)],
            "human_or_machine": [i % 2 for i in range(count)]}


def write_chartqa(folder: Path) -> Path:
    """train: 8 questions on 6 charts, one of them also a test chart; val 4; test 4."""
    train_images = [image(i) for i in range(6)] + [image(0), image(101)]  # a chart asked twice,
    return write_splits(folder, chartqa_features(), {                     # a test chart
        "train": chartqa_rows(train_images),
        "val": chartqa_rows([image(i) for i in range(20, 24)], 20),
        "test": chartqa_rows([image(i) for i in range(100, 104)], 100)})


def ai2d_features():
    """lmms-lab/ai2d's features, as its card lists them."""
    from datasets import Features, Value
    from datasets import Image as ImageFeature
    from datasets import Sequence as List  # datasets 2.x: Sequence; 4+: List (the same here)

    return Features({"question": Value("string"), "options": List(Value("string")),
                     "answer": Value("string"), "image": ImageFeature()})


def ai2d_rows(seeds: list[int]) -> dict[str, list]:
    """Diagram questions with four options; the answer is an index as a string."""
    return {"question": [f"Which stage comes after stage {s} in the diagram?" for s in seeds],
            "options": [[f"egg {s}", f"larva {s}", f"pupa {s}", f"adult {s}"] for s in seeds],
            "answer": [str(s % 4) for s in seeds],
            "image": [cell(image(s)) for s in seeds]}


def write_ai2d(hub_copy: Path, train_copy: Path) -> tuple[Path, Path]:
    """lmms-lab/ai2d's test split (5 questions), and a train split in the same columns (9)."""
    write_splits(hub_copy, ai2d_features(), {"test": ai2d_rows(list(range(200, 205)))})
    write_splits(train_copy, ai2d_features(), {"train": ai2d_rows(list(range(300, 309)))})
    return hub_copy, train_copy


def spatialeval_features():
    """MilaWang/SpatialEval's vqa features, as its card lists them."""
    from datasets import Features, Value
    from datasets import Image as ImageFeature

    return Features({"id": Value("string"), "text": Value("string"), "image": ImageFeature(),
                     "oracle_answer": Value("string"), "oracle_option": Value("string"),
                     "oracle_full_answer": Value("string")})


DIRECTIONS = ["Northeast", "Northwest", "Southwest", "Southeast"]


def spatial_rows(task: str, maps: list[int], questions_per_map: int = 2) -> dict[str, list]:
    """Map questions whose text lists lettered options; oracle_option holds the right letter."""
    rows: dict[str, list] = {key: [] for key in spatialeval_features()}
    for number in maps:
        for question in range(questions_per_map):
            right = (number + question) % 4
            rows["id"].append(f"{task}.vqa.{number}.{question}")
            rows["text"].append(  # SpatialEval lists options inline: "A. North, B. ..."
                f"This map shows shops; each has a name.\nIn which direction is Shop {question} "
                f"relative to Cafe {number}? Available options: "
                + ", ".join(f"{'ABCD'[i]}. {d}" for i, d in enumerate(DIRECTIONS)) + ".")
            rows["image"].append(cell(image(number)))
            rows["oracle_answer"].append(DIRECTIONS[right])
            rows["oracle_option"].append("ABCD"[right])
            rows["oracle_full_answer"].append(f"{'ABCD'[right]}. {DIRECTIONS[right]}")
    return rows


def write_spatialeval(hub_copy: Path, generated: Path) -> tuple[Path, Path]:
    """SpatialEval's layout (README configs, vqa/test-*.parquet, maze rows mixed in), and the
    generated maps in the same columns (validation and train splits)."""
    test = spatial_rows("spatialmap", [400, 401, 402])
    mazes = spatial_rows("mazenav", [500])
    write_splits(hub_copy, spatialeval_features(),
                 {"test": {key: test[key] + mazes[key] for key in test}}, subdir="vqa")
    (hub_copy / "README.md").write_text(
        "---\nconfigs:\n- config_name: vqa\n  data_files:\n  - split: test\n"
        "    path: vqa/test-*\n---\n")
    write_splits(generated, spatialeval_features(), {
        "validation": spatial_rows("spatialmap", list(range(600, 606))),
        "train": spatial_rows("spatialmap", list(range(700, 710)))})
    return hub_copy, generated
