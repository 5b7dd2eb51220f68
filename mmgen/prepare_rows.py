"""Benchmark rows to questions: open one split of a Hugging Face dataset and read each row as the
prompt, answer, split and options that `mmgen.prepare` writes. Column names and the answer's
form come from `dataset.source` (conf/dataset/*.yaml), so one reader serves every benchmark.
"""
from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from tqdm import tqdm

from mmgen.errors import UserError

LETTERS = "ABCDEFGHIJ"
IMAGE_TAG = re.compile(r"<image>\s*", re.IGNORECASE)
# "A. north", "A) north", "(A) north" at the start of a line or after a space or colon
OPTION_MARK = re.compile(r"(?<![^\s:])\(?([A-J])[.)]\s+")
# Pillow's name of a format -> the extension the pool lister knows (mmgen.pool.IMAGE_EXTENSIONS)
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp",
              "TIFF": ".tif"}
BAR_FROM = 256  # items from which a progress bar is shown


class RowError(ValueError):
    """One row cannot become a question or image; the row is skipped with this reason."""


@dataclass
class Question:
    """One benchmark question as the data files hold it."""

    id: str
    row: int  # row number in its split, before any filtering
    prompt: str  # the human turn without its image tag; options listed when there are any
    answer: str  # the answer turn; "B. plants" for a multiple-choice question
    split: str | None = None  # the benchmark's own split (ChartQA: human / augmented)
    options: list[str] | None = None  # option texts, lettered A, B, ... in this order


@dataclass
class SplitSource:
    """One split of a source dataset: raw image bytes, the rows kept, their images' hashes."""

    label: str  # "HuggingFaceM4/ChartQA, split val": how messages name it
    dataset: Any  # a datasets.Dataset whose image column yields {"bytes", "path"}
    rows: list[int]  # row numbers kept (all, or those whose id has dataset.source.id_prefix)
    images: dict[int, tuple[str, str] | str] = field(default_factory=dict)  # row -> (hash, ext)
    #                                                                         or why unreadable


@dataclass(frozen=True)
class RowFormat:
    """dataset.source's row mapping as plain values (read once per row, so not a DictConfig)."""

    columns: dict[str, str | None]  # image, question, answer, options, split, id -> column
    answer_format: str  # text | option_index | option_letter
    options_in_question: bool

    @classmethod
    def of(cls, source: DictConfig) -> RowFormat:
        answer_format = getattr(source.answer_format, "value", source.answer_format)
        return cls(dict(source.columns), str(answer_format), bool(source.options_in_question))


def progress(items, desc: str, total: int | None = None):
    """Iterate with a progress bar when there are enough items to wait for."""
    total = len(items) if total is None else total
    return tqdm(items, desc=desc, total=total, unit="row", disable=total < BAR_FROM)


def is_local(path: str) -> bool:
    """True for a folder on disk; a hub id is `name` or `owner/name`."""
    return path.startswith((".", "/", "~")) or path.count("/") > 1 or Path(path).exists()


def open_split(source: DictConfig, path: str, name: str | None, split: str,
               key: str) -> SplitSource:
    """Load `split` of dataset `path` (config `name`) with datasets.load_dataset, path unchanged."""
    import datasets

    label = f"{path}{f' (config {name})' if name else ''}, split {split}"
    if is_local(path) and not Path(path).expanduser().is_dir():
        raise UserError(f"{key}: local dataset folder '{path}' not found: download the dataset "
                        "there (its parquet files under the hub's split names) or fix the path")
    try:
        dataset = datasets.load_dataset(path, name, split=split)
    except ConnectionError as error:
        raise UserError(f"{key}: cannot load {label}: {error}. Load it once with network (it is "
                        "then cached; HF_HUB_OFFLINE=1 reads the cache), or set the path to a "
                        "local copy") from None
    except (ValueError, FileNotFoundError) as error:
        raise UserError(f"{key}: cannot load {label}: {error}") from None
    columns = source.columns
    for column_key in ("image", "question", "answer", "options", "split", "id"):
        column = columns[column_key]
        if column and column not in dataset.column_names:
            raise UserError(f"dataset.source.columns.{column_key}: no column '{column}' in {label};"
                            f" its columns: {', '.join(dataset.column_names)}")
    if not isinstance(dataset.features[columns.image], datasets.Image):
        raise UserError(f"dataset.source.columns.image: column '{columns.image}' of {label} is "
                        f"{dataset.features[columns.image]}, not an image (datasets.Image)")
    dataset = dataset.cast_column(columns.image, datasets.Image(decode=False))
    rows = list(range(len(dataset)))
    if source.id_prefix:
        ids = dataset.select_columns([columns.id]).to_dict()[columns.id]  # one read, not per row
        rows = [row for row in rows if str(ids[row]).startswith(source.id_prefix)]
        if not rows:
            raise UserError(f"dataset.source.id_prefix: no row of {label} has an id starting with "
                            f"'{source.id_prefix}'")
    return SplitSource(label, dataset, rows)


def split_namer(source: DictConfig, dataset: Any) -> Callable[[Any], str | None]:
    """A function from a split-column value (string or class label) to the split's name."""
    column = source.columns.split
    if not column:
        return lambda value: None
    feature = dataset.features[column]
    as_text = feature.int2str if hasattr(feature, "int2str") else str
    renames = dict(source.split_names)
    return lambda value: renames.get(as_text(value), as_text(value))


def parse_options(text: str) -> list[str] | None:
    """The options a question lists as "A. x B. y ..." (the last such run), or None."""
    marks = list(OPTION_MARK.finditer(text))
    best = None
    for start, mark in enumerate(marks):
        if mark[1] != "A":
            continue
        run = [mark]
        for later in marks[start + 1:]:
            if len(run) < len(LETTERS) and later[1] == LETTERS[len(run)]:
                run.append(later)
        if len(run) >= 2:
            best = run
    if best is None:
        return None
    options = []
    for mark, following in zip(best, best[1:] + [None]):
        line_end = text.find("\n", mark.end())  # the last option ends with its line
        end = following.start() if following else (line_end if line_end >= 0 else len(text))
        options.append(text[mark.end():end].strip().rstrip(".,;").strip())
    return options if all(options) else None


def _answer(value: Any, options: list[str] | None, answer_format: str) -> str:
    """The answer turn: the text itself, or "<letter>. <option>" for a chosen option."""
    if isinstance(value, (list, tuple)):  # ChartQA's label is a list holding the answer
        if not value:
            raise RowError("the answer list is empty")
        value = value[0]
    text = "" if value is None else str(value).strip()
    if not text:
        raise RowError("the answer is empty")
    if answer_format == "text":
        return text
    if not options:
        raise RowError("no options to pick the answer from")
    if answer_format == "option_index":
        if not text.lstrip("-").isdigit():
            raise RowError(f"answer '{text}' is not an option index")
        index = int(text)
    else:
        letter = text.strip("() .").upper()
        by_text = [i for i, option in enumerate(options) if option.casefold() == text.casefold()]
        if len(letter) == 1 and letter in LETTERS:
            index = LETTERS.index(letter)
        elif by_text:  # some copies name the option by its text
            index = by_text[0]
        else:
            raise RowError(f"answer '{text}' is neither an option letter nor an option's text")
    if not 0 <= index < len(options):
        raise RowError(f"answer '{text}' points past the {len(options)} options")
    return f"{LETTERS[index]}. {options[index]}"


def to_question(form: RowFormat, record: dict, row: int, split: str,
                split_name: Callable[[Any], str | None]) -> Question:
    """One row (its non-image columns) as a Question; RowError when it cannot be one."""
    columns = form.columns
    prompt = IMAGE_TAG.sub("", str(record[columns["question"]] or "")).strip()
    if not prompt:
        raise RowError("the question is empty")
    options = None
    if form.options_in_question:
        options = parse_options(prompt)
    elif columns["options"]:
        options = [str(option).strip() for option in record[columns["options"]] or []]
        if len(options) < 2:
            raise RowError(f"column '{columns['options']}' holds {len(options)} options")
        prompt += "\nOptions:\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    answer = _answer(record[columns["answer"]], options, form.answer_format)
    question_id = str(record[columns["id"]]) if columns["id"] else f"{split}-{row}"
    split_value = split_name(record[columns["split"]]) if columns["split"] else None
    return Question(question_id, row, prompt, answer, split_value, options)


def text_records(form: RowFormat, split: SplitSource) -> dict[int, dict]:
    """Row -> its non-image columns, for the rows kept (read column by column, not row by row)."""
    names = sorted({c for key, c in form.columns.items() if c and key != "image"})
    table = split.dataset.select_columns(names).to_dict()
    return {row: {name: table[name][row] for name in names} for row in split.rows}


def iter_images(split: SplitSource, image_column: str, rows: list[int],
                batch: int = 64) -> Iterator[tuple[int, bytes | RowError]]:
    """(row, image bytes or why there are none) for `rows`, read in batches."""
    images = split.dataset.select_columns([image_column])
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        for row, value in zip(chunk, images.select(chunk)[image_column]):
            try:
                yield row, image_bytes(value)
            except RowError as error:
                yield row, error


def identify_images(split: SplitSource, image_column: str) -> None:
    """Fill split.images with every kept row's (hash, extension), or why it is unreadable."""
    todo = [row for row in split.rows if row not in split.images]
    rows = progress(iter_images(split, image_column, todo), f"hashing {split.label}", len(todo))
    for row, data in rows:
        try:
            if isinstance(data, RowError):
                raise data
            split.images[row] = image_identity(data)
        except RowError as error:
            split.images[row] = str(error)


def image_bytes(value: Any) -> bytes:
    """The bytes of a raw image cell ({"bytes", "path"}), read from its path when not embedded."""
    if isinstance(value, dict) and value.get("bytes"):
        return value["bytes"]
    if isinstance(value, dict) and value.get("path") and Path(value["path"]).is_file():
        return Path(value["path"]).read_bytes()
    raise RowError("the row has no image")


def image_identity(data: bytes) -> tuple[str, str]:
    """(content hash as the pool cache uses it, file extension) of an image's bytes."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            image.verify()  # reads the whole file (checksums), decodes no pixels
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise RowError(f"the image cannot be read: {error}") from None
    if kind not in EXTENSIONS:
        raise RowError(f"image format {kind} is not one the pool reads "
                       f"({', '.join(EXTENSIONS)})")
    return hashlib.sha256(data).hexdigest()[:32], EXTENSIONS[kind]
