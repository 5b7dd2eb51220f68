"""Which rows `mmgen.prepare` keeps: each split opened once, rows read as questions (unreadable
ones skipped with their reason, most of a split unreadable meaning a wrong mapping), eval images
kept out of everything else, and the pool's distinct images sampled by seed."""
from __future__ import annotations

from omegaconf import DictConfig

from mmgen.errors import UserError
from mmgen.prepare_files import sample
from mmgen.prepare_rows import (
    Question,
    RowError,
    RowFormat,
    SplitSource,
    identify_images,
    open_split,
    split_namer,
    text_records,
    to_question,
)


class Splits:
    """Each split a role reads, opened once (train and pool usually share one)."""

    def __init__(self, source: DictConfig):
        self.source, self.opened = source, {}

    def get(self, role: str) -> SplitSource:
        spec = self.source[role]
        path, name = (spec.path, spec.name) if spec.path else (self.source.path, self.source.name)
        if (path, name, spec.split) not in self.opened:
            self.opened[path, name, spec.split] = open_split(
                self.source, path, name, spec.split, f"dataset.source.{role}")
        return self.opened[path, name, spec.split]


def usable_questions(cfg: DictConfig, role: str, split: SplitSource, excluded: set[str],
               skips: list[dict]) -> tuple[list[tuple[Question, str]], int]:
    """The role's usable questions with their image file names; and how many were dropped for
    showing an eval image."""
    source = cfg.dataset.source
    form = RowFormat.of(source)
    records = text_records(form, split)
    identify_images(split, form.columns["image"])
    name_split = split_namer(source, split.dataset)
    usable, dropped, first_row_of = [], 0, {}
    for row in split.rows:
        try:
            question = to_question(form, records[row], row, source[role].split, name_split)
            identity = split.images[row]
            if isinstance(identity, str):
                raise RowError(identity)
        except RowError as error:
            skips.append({"file": role, "source": split.label, "row": row, "reason": str(error)})
            continue
        if question.id in first_row_of:
            raise UserError(f"dataset.source.columns.id: id '{question.id}' is on rows "
                            f"{first_row_of[question.id]} and {row} of {split.label}")
        first_row_of[question.id] = row
        if identity[0] in excluded:
            dropped += 1
            continue
        usable.append((question, identity[0] + identity[1]))
    unreadable = [skip for skip in skips if skip["file"] == role]
    if len(unreadable) > len(usable) + dropped:  # most rows: a wrong mapping, not bad rows
        raise UserError(f"dataset.source.{role}: {len(unreadable)} of {len(split.rows)} rows of "
                        f"{split.label} cannot be read, e.g. row {unreadable[0]['row']}: "
                        f"{unreadable[0]['reason']}; check dataset.source.columns and "
                        "answer_format")
    if not usable:
        raise UserError(f"dataset.source.{role}: every question of {split.label} shows an eval "
                        "image; read it from another split")
    return usable, dropped


def pool_images(cfg: DictConfig, split: SplitSource, eval_images: set[str],
                skips: list[dict]) -> tuple[dict[str, int], int]:
    """The pool's {file name: source row}: the distinct images of source.pool's rows, sampled
    by seed, eval images left out; and how many rows showed an eval image."""
    image_column = cfg.dataset.source.columns.image
    first_row: dict[str, int] = {}
    dropped = 0
    identify_images(split, image_column)
    for row in split.rows:
        identity = split.images[row]
        if isinstance(identity, str):
            skips.append({"file": "pool", "source": split.label, "row": row, "reason": identity})
        elif identity[0] in eval_images:
            dropped += 1
        else:
            first_row.setdefault(identity[0] + identity[1], row)
    names = list(first_row)
    chosen = {names[p]: first_row[names[p]]
              for p in sample([None] * len(names), cfg.dataset.source.pool.count, cfg.seed, "pool")}
    if not chosen:
        raise UserError(f"dataset.source.pool: no usable image in {split.label}")
    return chosen, dropped
