"""Pools in other shapes, made from a folder of images: WebDataset tar shards, a Hugging Face
dataset of parquet files, a list file."""
from __future__ import annotations

import json
from pathlib import Path


def pool_images(folder: Path) -> list[Path]:
    """The image files of a pool folder, sorted."""
    return sorted(path for path in folder.rglob("*") if path.suffix in (".png", ".jpg"))


def pack_shards(images: list[Path], pattern: str, per_shard: int) -> list[Path]:
    """img2dataset's layout, written by webdataset's own ShardWriter: per image `key.<ext>`
    plus `key.json` and `key.txt`. `pattern` is a printf path like `shards/%05d.tar`."""
    import webdataset

    Path(pattern).parent.mkdir(parents=True, exist_ok=True)
    with webdataset.ShardWriter(pattern, maxcount=per_shard, verbose=0) as sink:
        for index, path in enumerate(images):
            key = f"{index:06d}"
            sink.write({"__key__": key, path.suffix[1:]: path.read_bytes(),
                        "json": json.dumps({"source": path.name}).encode(),
                        "txt": f"caption of {path.name}".encode()})
    return sorted(Path(pattern).parent.glob("*.tar"))


def write_parquet_dataset(images: list[Path], folder: Path, split: str = "train") -> Path:
    """A local Hugging Face dataset (one parquet file per split) with an `image` column and a
    `caption` column, as a hub dataset's parquet export looks."""
    import datasets

    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": path.read_bytes(), "path": path.name} for path in images],
         "caption": [f"caption of {path.name}" for path in images]},
        features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")}))
    target = folder / "data" / f"{split}-00000-of-00001.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(target))
    return folder
