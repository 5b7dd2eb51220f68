"""Print how two experiments' composed configs differ, key by key (for config-diff reviews).

    python -m mmgen.diff chartqa_mmgen chartqa_5icl [override ...]

An experiment is a name from conf/experiment/ (`default` means no experiment: the base
config). Extra arguments are overrides applied to both sides. The `hydra` node is ignored.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from mmgen.stage import _quote_numeric_choice  # importing mmgen.stage registers the schema

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
BASE = "default"
ABSENT = "<absent>"


def composed(experiment: str, overrides: list[str] | None = None) -> dict:
    """The experiment's config as a plain dict, interpolations resolved, without `hydra`."""
    choice = [] if experiment == BASE else [f"+experiment={experiment}"]
    overrides = [_quote_numeric_choice(override) for override in overrides or []]  # icl=3
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=choice + overrides,
                          return_hydra_config=True)
            with open_dict(cfg):  # as in a run: ${hydra:runtime.output_dir} is the run dir
                cfg.hydra.runtime.output_dir = cfg.hydra.run.dir
            HydraConfig().set_config(cfg)
            with open_dict(cfg):
                del cfg["hydra"]
            return OmegaConf.to_container(cfg, resolve=True)
    finally:
        GlobalHydra.instance().clear()


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"icl": {"num_examples": 3}} -> {"icl.num_examples": 3}; lists stay whole values."""
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def differences(left: dict, right: dict) -> list[tuple[str, Any, Any]]:
    """(key, left value, right value) for every key whose values differ, sorted by key."""
    flat_left, flat_right = flatten(left), flatten(right)
    rows = []
    for key in sorted(set(flat_left) | set(flat_right)):
        left_value = flat_left.get(key, ABSENT)
        right_value = flat_right.get(key, ABSENT)
        if left_value != right_value:
            rows.append((key, left_value, right_value))
    return rows


def show(value: Any) -> str:
    """A value as text: strings as written, others as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(name_a: str, name_b: str, rows: list[tuple[str, Any, Any]]) -> str:
    """The report: `key: a -> b` per difference; long or multi-line values as -/+ blocks."""
    if not rows:
        return f"{name_a} and {name_b} compose to the same config"
    lines = [f"{len(rows)} key(s) differ: {name_a} -> {name_b}"]
    width = max(len(key) for key, _, _ in rows)
    for key, left_value, right_value in rows:
        left_text, right_text = show(left_value), show(right_value)
        if len(left_text) + len(right_text) <= 80 and "\n" not in left_text + right_text:
            lines.append(f"  {key:<{width}}  {left_text} -> {right_text}")
            continue
        lines.append(f"  {key}")
        for mark, text in (("-", left_text), ("+", right_text)):
            lines += [f"    {mark} {line}" for line in text.splitlines() or [""]]
    return "\n".join(lines)


def experiments() -> list[str]:
    """The experiment names in conf/experiment/."""
    return sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the differences; exits 0 whether or not they differ."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    name_a, name_b, overrides = args[0], args[1], args[2:]
    for name in (name_a, name_b):
        if name != BASE and name not in experiments():
            print(f"unknown experiment '{name}'; choose from: {BASE}, {', '.join(experiments())}",
                  file=sys.stderr)
            return 2
    rows = differences(composed(name_a, overrides), composed(name_b, overrides))
    print(render(name_a, name_b, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
