"""Seed-format task files for tests: tiny ones of ours in tests/data, and the seed's real ones.

Ours have the seed's exact shape (human/gpt and user/assistant roles, option lists in the question
text, image paths under an image_folder prefix) and travel with the repository. The seed's real
files are read only from the folder named by MMGEN_SEED_REFERENCE_DIR (see run_if).
"""
from __future__ import annotations

from pathlib import Path

from helpers.run_if import seed_reference_file

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def seed_task_file(name: str) -> Path:
    """tests/data/<name> when the repository ships it, else the seed's real file of that name."""
    ours = DATA_DIR / name
    return ours if ours.is_file() else seed_reference_file(name)
