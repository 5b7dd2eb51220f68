"""Helpers for tests and benchmarks of the generate stage: prompts.jsonl fixtures written
straight from a demo data dir, so generation can be exercised without the upstream stages.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from mmgen import modes
from mmgen.contracts import write_prompts
from mmgen.stage import out_dir

CHART_KINDS = ("bar", "line", "pie")
SMALL_DEMO = {"reference": {"bar": 4, "line": 3, "pie": 3}, "eval": {"bar": 1, "line": 1, "pie": 1},
              "pool": {"bar": 20, "line": 15, "pie": 15, "map": 3, "shapes": 3, "noise": 2,
                       "table": 2}}


def build_small_demo(root: Path, counts: dict | None = None) -> Path:
    """A demo data dir with 73 images by default (about 2 s to build), for tests."""
    from mmgen.demo.build import build_demo

    build_demo(root, seed=0, counts=counts or SMALL_DEMO)
    return Path(root)


def demo_prompt_records(root: Path, count: int, keys=("Q", "A"), wanted: int = 1,
                        num_examples: int = 1) -> Iterator[dict]:
    """`count` prompt records over the demo pool's charts (cycled), each with in-context
    examples from reference/ of the same chart kind, in the shape prompts.jsonl uses."""
    truth = json.loads((Path(root) / "truth.json").read_text())
    references = {kind: sorted(p for p, e in truth.items()
                               if p.startswith("reference/") and e["kind"] == kind)
                  for kind in CHART_KINDS}
    candidates = sorted(p for p, e in truth.items()
                        if p.startswith("pool/") and e["kind"] in CHART_KINDS)
    for number in range(count):
        candidate = candidates[number % len(candidates)]
        kind = truth[candidate]["kind"]
        examples = [references[kind][(number + i) % len(references[kind])]
                    for i in range(num_examples)]
        text = (f"Task: chart question answering. Here are {num_examples} example image(s), then "
                f"a new chart. Write {wanted} question/answer pair(s) about the last image.\n\n"
                + modes.reply_format(keys, wanted))
        yield {"id": f"{kind}-chart-{number:06d}", "keyword": f"{kind} chart",
               "icl_indices": list(range(num_examples)), "system": "You write training data.",
               "content": [{"type": "text", "text": text}]
               + [{"type": "image", "path": path} for path in examples + [candidate]],
               "candidate_image": candidate, "candidate_score": 0.5}


def write_prompts_fixture(cfg: DictConfig, records) -> Path:
    """Write <out_dir>/prompts.jsonl for generate to run on alone (runner.run(..., alone=True))."""
    path = out_dir(cfg) / "prompts.jsonl"
    write_prompts(path, records)
    return path
