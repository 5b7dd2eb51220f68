"""Skips that say what is missing and how to get it; where CI is set, a missing need fails instead.

A test that needs something outside the repository (a browser, the seed's real task files) calls
one of these first. On a developer's machine the test is skipped with a reason that says how to
provide it; in CI nothing may be skipped for want of it, so the same absence fails the test.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

SEED_REFERENCE_VAR = "MMGEN_SEED_REFERENCE_DIR"


def in_ci() -> bool:
    """True where the CI variable is set (CI services and .ci/run set it); '0' or 'false' is off."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str, how: str) -> NoReturn:
    """Skip the calling test, naming what is missing and how to provide it; fail it in CI."""
    if in_ci():
        pytest.fail(f"{what} (CI is set, so this test may not be skipped): {how}", pytrace=False)
    pytest.skip(f"{what}: {how}")


def chromium() -> str:
    """Path of the headless browser the report test drives."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        missing("no chromium on PATH",
                "install it with `bash .ci/install_chromium.sh` (Debian's `apt-get install chromium`)")
    return binary


def seed_reference_file(name: str) -> Path:
    """One of the seed's real task files, from the folder that MMGEN_SEED_REFERENCE_DIR names."""
    folder = os.environ.get(SEED_REFERENCE_VAR, "")
    if not folder:
        missing(f"{SEED_REFERENCE_VAR} is unset, so the seed's real {name} is not tested",
                "set it to the folder holding the seed's task files (ai2d_task_file.json, "
                "spatial_map_task_file.json); .ci/run sets it to the seed's reference folder")
    path = Path(folder).expanduser() / name
    if not path.is_file():  # a folder was named on purpose: a wrong one is an error, not a skip
        pytest.fail(f"{SEED_REFERENCE_VAR}={folder} holds no {name}; point it at the folder "
                    "holding the seed's task files", pytrace=False)
    return path
