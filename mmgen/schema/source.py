"""Schema of `dataset.source`: the Hugging Face dataset `python -m mmgen.prepare` reads a
benchmark from, how its columns map to questions, and which split feeds which file."""
from dataclasses import dataclass, field

from omegaconf import MISSING

from mmgen.schema.choices import Choice


class AnswerFormat(Choice):
    """What the answer column holds."""
    text = "text"  # the answer itself (a list: its first entry)
    option_index = "option_index"  # the 0-based index of the right option ("1" = B)
    option_letter = "option_letter"  # the letter of the right option ("B")


@dataclass
class SourceColumns:
    image: str = MISSING  # image column (a datasets.Image feature)
    question: str = MISSING  # question text
    answer: str = MISSING  # answer column; see answer_format
    options: str | None = None  # list column of a multiple-choice question's option texts
    split: str | None = None  # the benchmark's own split of a question (string or class label)
    id: str | None = None  # question id; null: "<split>-<row number>"


@dataclass
class SourceRole:
    split: str | None = None  # split of the source this file is made from; null: not made
    count: int | None = None  # questions (pool: images) sampled by seed; null: all of them
    path: str | None = None  # another dataset for this file only; null: dataset.source.path
    name: str | None = None  # config name of `path` (used only with `path`)


@dataclass
class SourceConfig:
    path: str = MISSING  # hub id or local folder, passed to datasets.load_dataset unchanged
    name: str | None = None  # config name (load_dataset's second argument)
    columns: SourceColumns = field(default_factory=SourceColumns)
    answer_format: AnswerFormat = AnswerFormat.text  # what columns.answer holds
    options_in_question: bool = False  # the question text lists its options; they are read from it
    id_prefix: str | None = None  # keep only rows whose id starts with this (one task of many)
    split_names: dict[str, str] = field(default_factory=dict)  # renames the benchmark's splits
    reference: SourceRole = field(default_factory=SourceRole)  # -> dataset.reference
    eval: SourceRole = field(default_factory=SourceRole)  # -> dataset.eval
    train: SourceRole = field(default_factory=SourceRole)  # -> dataset.train (the skyline)
    pool: SourceRole = field(default_factory=SourceRole)  # -> dataset.pool (its images only)
