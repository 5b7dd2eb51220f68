"""Layering: no module imports in a cycle (lazy imports inside functions count too), core
modules never name the demo, and nothing test-only ships in the package."""
from __future__ import annotations

import ast
import functools
import gc
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mmgen"
# the modules that may name the demo: the demo itself and the registry that wires the pieces
DEMO_AWARE = ("mmgen.demo", "mmgen.testing")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _parse(path: Path) -> ast.Module:
    # CPython 3.11 can fail compile() with "AST constructor recursion depth mismatch" when the
    # garbage collector finalises an object (a server coroutine an earlier test left) mid-parse
    gc.collect()
    gc.disable()
    try:
        return ast.parse(path.read_text())
    finally:
        gc.enable()


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body."""
    sources = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in sources.items():
        targets = set()
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {t for t in targets if t in sources and t != name
                       and not name.startswith(t + ".")}  # a package's own __init__ is no cycle
    return graph


def test_no_module_imports_in_a_cycle():
    graph = import_graph()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for target in graph[node]:
            if target in path:
                cycles.append(path[path.index(target):] + [target])
            elif len(path) < 10:
                visit(target, path + [target])

    for module in graph:
        visit(module, [module])
    assert not cycles, cycles[:5]


def test_core_modules_never_name_the_demo():
    offenders = [name for name, targets in import_graph().items()
                 if not name.startswith(DEMO_AWARE)
                 and any(t.startswith("mmgen.demo") for t in targets)]
    assert not offenders


def test_nothing_outside_mmgen_testing_imports_the_test_helpers():
    offenders = [name for name, targets in import_graph().items()
                 if not name.startswith("mmgen.testing")
                 and any(t.startswith("mmgen.testing") for t in targets)]
    assert not offenders
