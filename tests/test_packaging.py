"""What a wheel ships: every file the package reads, and conf/ as mmgen/conf (.ci/wheel.sh runs it)."""
from __future__ import annotations

from pathlib import Path

import pytest

import mmgen

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"mmgen": REPO / "mmgen", "mmgen.conf": REPO / "conf"}  # as setup.py maps them


def package_data() -> dict[str, list[str]]:
    """pyproject.toml's [tool.setuptools.package-data]."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]["package-data"]


def data_files(root: Path) -> set[Path]:
    """Files under root that are not Python code or its byproducts."""
    return {path for path in root.rglob("*") if path.is_file() and "__pycache__" not in path.parts
            and path.suffix not in (".py", ".pyc")}


@pytest.mark.parametrize("package", sorted(PACKAGE_DIRS))
def test_every_data_file_is_declared_for_the_wheel(package):
    root = PACKAGE_DIRS[package]
    declared = {path for pattern in package_data().get(package, []) for path in root.glob(pattern)}
    undeclared = sorted(str(path.relative_to(REPO)) for path in data_files(root) - declared)
    assert not undeclared, (f"not shipped in the wheel: {undeclared}; add a pattern to "
                            f"pyproject.toml's [tool.setuptools.package-data] {package!r}")


def test_a_checkout_reads_its_own_conf():
    assert Path(mmgen.CONF_DIR) == REPO / "conf"
