"""Reading rows of a Hugging Face dataset's image column (kept apart from the pool listing in
hf.py, so a pool item can read its bytes without importing the listing)."""
from __future__ import annotations

import functools
from pathlib import Path

from mmgen.errors import UserError


@functools.lru_cache(maxsize=8)
def load(dataset: tuple[str, str, str]):
    """The dataset's split with just the image column, images kept as undecoded bytes."""
    try:
        import datasets
    except ImportError:
        raise UserError("dataset.pool names a Hugging Face dataset (hf://...), which needs the "
                        "datasets package: pip install -e '.[hf]'") from None

    path, split, column = dataset
    try:
        table = datasets.load_dataset(path, split=split)
    except Exception as err:  # noqa: BLE001  (missing files, no network, bad split: one message)
        raise UserError(f"dataset.pool: could not load Hugging Face dataset '{path}' split "
                        f"'{split}' ({type(err).__name__}: {err}). Offline, a hub id must be in "
                        "the local Hugging Face cache; or point at a local folder") from None
    if column not in table.column_names:
        raise UserError(f"dataset.pool: Hugging Face dataset '{path}' split '{split}' has no "
                        f"column '{column}'; its columns: {', '.join(table.column_names)}")
    feature = table.features[column]
    if isinstance(feature, datasets.Image):
        table = table.cast_column(column, datasets.Image(decode=False))
    elif getattr(feature, "dtype", None) not in ("binary", "large_binary"):
        raise UserError(f"dataset.pool: column '{column}' of '{path}' holds {feature}, not "
                        "images; name the image column: hf://PATH:SPLIT:COLUMN")
    return table.select_columns([column])


def cell_bytes(value, where: str) -> bytes:
    """An image cell's bytes: raw bytes, or an Image feature's {bytes, path}."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):
            return Path(value["path"]).read_bytes()
    if isinstance(value, bytes):
        return value
    raise OSError(f"{where}: no image bytes in this row")


def row_bytes(dataset: tuple[str, str, str], row: int) -> bytes:
    """The image bytes of one row."""
    return cell_bytes(load(dataset)[row][dataset[2]], f"row {row}")
