"""Fixture files for the filter, export and report tests: a small demo domain and the files the
upstream stages would have written (task.json, prompts.jsonl, generations.jsonl, data.json,
stats.json), in the brief's shapes, with a few samples that the cheap checks must remove."""
from __future__ import annotations

import random
from pathlib import Path

from mmgen.contracts import read_json, write_dataset, write_json, write_jsonl, write_task
from mmgen.demo.charts import KEYWORDS, make_qa

SMALL_COUNTS = {"reference": {"bar": 4, "line": 3, "pie": 3},
                "eval": {"bar": 1, "line": 1, "pie": 1},
                "pool": {"bar": 8, "line": 6, "pie": 6, "map": 1, "noise": 1}}
# samples the cheap checks must remove, by the check that removes them
BAD_ITEMS = {
    "numeric": {"Q": "How many bars does the chart have?", "A": "several of them"},
    "choice": {"Q": "Which colour is the first bar? Options: A. red B. blue C. green",
               "A": "purple"},
    "length": {"Q": "What is the title of the chart?", "A": "x" * 5000},
}


def write_upstream(out_dir: Path, demo_root: Path, captions_per_image: int = 3) -> dict:
    """Write what partition..generate would leave in out_dir; returns counts for assertions."""
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = read_json(demo_root / "truth.json")
    reference = read_json(demo_root / "reference.json")
    subgroups = []
    for kind in ("bar", "line", "pie"):
        pool = sorted(p for p, e in truth.items() if p.startswith("pool/") and e["kind"] == kind)
        subgroups.append({
            "keyword": KEYWORDS[kind],
            "reference_sample_idx": [i for i, s in enumerate(reference["samples"])
                                     if s["image_1"].startswith(f"reference/{kind}_")],
            "candidate_image_paths": pool, "candidate_scores": [0.3] * len(pool)})
    write_task(out_dir / "task.json", {**reference, "subgroups": subgroups})
    rng = random.Random(0)
    prompts, generations, samples = [], [], []
    for group_index, group in enumerate(subgroups):
        slug = group["keyword"].replace(" ", "-")
        for number, image in enumerate(group["candidate_image_paths"]):
            prompt_id = f"{slug}-{number:06d}"
            icl = rng.sample(group["reference_sample_idx"], 2)
            prompts.append({"id": prompt_id, "keyword": group["keyword"], "icl_indices": icl,
                            "system": "You write questions.", "content": [
                                {"type": "text", "text": "Write questions."},
                                {"type": "image", "path": image}],
                            "candidate_image": image, "candidate_score": 0.3})
            if number == 1:  # one failure per subgroup, of different classes
                error_class = ["rate_limit", "parse", "timeout"][group_index]
                generations.append(_failed(prompt_id, error_class))
                continue
            items = make_qa(truth[image], rng, captions_per_image)
            generations.append({"id": prompt_id, "status": "ok", "reply": "[]", "items": items,
                                "usage": {"prompt_tokens": 900, "completion_tokens": 60},
                                "attempts": 1, "error_class": None, "error": None,
                                "model": "demo-teacher"})
            samples += [_sample(prompt_id, i, image, item, group["keyword"], icl)
                        for i, item in enumerate(items)]
    # injected: a repeated question about the same image, and one breaker per format check
    duplicate = dict(samples[0], id=samples[0]["id"] + "-dup")
    samples.append(duplicate)
    first = samples[0]
    for name, item in BAD_ITEMS.items():
        samples.append(_sample(first["prompt_id"], f"bad-{name}", first["image_1"], item,
                               first["keyword"], first["icl_indices"]))
    write_jsonl(out_dir / "prompts.jsonl", prompts)
    write_jsonl(out_dir / "generations.jsonl", generations)
    write_dataset(out_dir / "data.json", {"image_folder": str(demo_root), "samples": samples})
    write_json(out_dir / "stats.json", {"generate": {"ok": 19, "failed": 3, "cost_usd": 0.1234,
                                                     "tokens_in": 17100, "wall_s": 1.5}})
    return {"prompts": len(prompts), "failed": 3, "samples": len(samples),
            "bad": 1 + len(BAD_ITEMS), "subgroups": len(subgroups)}


def _failed(prompt_id: str, error_class: str) -> dict:
    return {"id": prompt_id, "status": "failed", "reply": None, "items": [],
            "usage": {"prompt_tokens": 900, "completion_tokens": 0}, "attempts": 3,
            "error_class": error_class, "error": f"{error_class} after 3 attempts",
            "model": "demo-teacher"}


def _sample(prompt_id: str, item: int | str, image: str, qa: dict, keyword: str, icl: list) -> dict:
    return {"id": f"{prompt_id}-{item}-0", "image_1": image,
            "conversations": [{"from": "human", "value": f"<image>\n{qa['Q']}"},
                              {"from": "gpt", "value": qa["A"]}],
            "keyword": keyword, "icl_indices": icl, "prompt_id": prompt_id,
            "candidate_score": 0.3, "model": "demo-teacher"}
