"""What `mmgen.prepare` writes and how: seeded stratified sampling, images stored once under
their content hash, question files in the reference-set format, and folder listings that tell
whether a prepared root was changed since."""
from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from mmgen.prepare_rows import Question, RowError, SplitSource, iter_images, progress

IMAGES = "images"  # folder of the images the question files name, under dataset.root


def listing(folder: Path, with_mtime: bool = False) -> str:
    """Digest of a folder's file names and sizes (and mtimes), recursive, hidden files skipped."""
    digest = hashlib.sha256()
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                mtime = f"\0{stat.st_mtime_ns}" if with_mtime else ""
                digest.update(f"{path.relative_to(folder)}\0{stat.st_size}{mtime}\n".encode())
    return digest.hexdigest()[:16]


def sample(strata: list, count: int | None, seed: int, salt: str) -> list[int]:
    """Positions of `count` items drawn by seed, each stratum in proportion to its size."""
    if count is None or count >= len(strata):
        return list(range(len(strata)))
    rng = random.Random(f"{seed}/{salt}")  # a str seed hashes the same in every process
    groups: dict[str, list[int]] = {}
    for position, stratum in enumerate(strata):
        groups.setdefault(str(stratum), []).append(position)
    exact = {name: count * len(members) / len(strata) for name, members in groups.items()}
    quota = {name: int(share) for name, share in exact.items()}
    by_remainder = sorted(groups, key=lambda name: (quota[name] - exact[name], name))
    for name in by_remainder[:count - sum(quota.values())]:  # largest remainders first
        quota[name] += 1
    chosen = [p for name in sorted(groups) for p in rng.sample(groups[name], quota[name])]
    return sorted(chosen)


def linked(target: Path, twin: Path) -> bool:
    """Hard-link the same image from the twin folder; False when there is none or no link."""
    if not twin.is_file():
        return False
    try:
        os.link(twin, target)
        return True
    except OSError:  # another filesystem, or no hard links: the image is written instead
        return False


def write_images(split: SplitSource, image_column: str, folder: Path, twin_folder: Path,
                 files: dict[str, int], label: str) -> None:
    """Write each {file name: source row} image into `folder` once: a present file is kept,
    one in the twin folder (images/ or the pool) hard-linked, the rest written."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = {name: row for name, row in files.items() if not (folder / name).is_file()
               and not linked(folder / name, twin_folder / name)}
    names = {row: name for name, row in missing.items()}
    rows = sorted(names)
    for row, data in progress(iter_images(split, image_column, rows), f"writing {label}",
                              len(rows)):
        if isinstance(data, RowError):  # identified before, so the source changed meanwhile
            raise data
        temporary = folder / f".{names[row]}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, folder / names[row])


def sample_record(question: Question, image: str, held_out: bool) -> dict:
    """A question as a reference-set sample; an eval sample adds its split and options."""
    record = {"id": question.id, "image_1": image, "conversations": [
        {"from": "human", "value": f"<image>\n{question.prompt}"},
        {"from": "gpt", "value": question.answer}]}
    if held_out and question.split is not None:
        record["split"] = question.split
    if held_out and question.options:
        record["options"] = question.options
    return record


def prune(folder: Path, keep: set[str]) -> int:
    """Delete the files an earlier recipe left in a folder prepare owns; returns how many."""
    stale = [p for p in folder.iterdir() if p.is_file() and p.name not in keep] \
        if folder.is_dir() else []
    for path in stale:
        path.unlink()
    return len(stale)
