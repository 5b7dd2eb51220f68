"""A given task file fixes the subgroups: they are used as they are, never cut again by `refset`."""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from conftest import compose_config

from mmgen import prompts
from mmgen.contracts import iter_jsonl, load_task

SIZES = {"bar chart": 4, "pie chart": 4, "line chart": 10}  # already imbalanced, as the seed's


def imbalanced_task_file(folder: Path) -> Path:
    """A seed-format task file whose subgroups are already cut (4/4/10), with candidates."""
    samples, subgroups, start = [], [], 0
    for keyword, size in SIZES.items():
        stem = keyword.split()[0]
        for index in range(size):
            samples.append({"id": f"{stem}_{index}", "image_1": f"{stem}_{index}.png",
                            "conversations": [
                                {"from": "user", "value": f"<image>\nWhat is the top {stem}?"},
                                {"from": "assistant", "value": str(index)}]})
        subgroups.append({"keyword": keyword,
                          "reference_sample_idx": list(range(start, start + size)),
                          "candidate_image_paths": [f"pool/{stem}_{i}.png" for i in range(30)]})
        start += size
    path = folder / "imbalanced_task_file.json"
    path.write_text(json.dumps({"image_folder": "ref", "dataset_description": "Charts.",
                                "subgroups": subgroups, "samples": samples}))
    return path


def test_imbalanced_experiment_allocates_from_the_task_files_own_subgroup_sizes(
        tmp_path, caplog):
    task_file = imbalanced_task_file(tmp_path)
    cfg = compose_config(["+experiment=chartqa_imbalanced_refset", f"task_file={task_file}",
                          f"dataset.root={tmp_path}", "check_images=false", "total_gen=180",
                          "clip=demo_tiny", "dataset.eval=null"], tmp_path / "out")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        out = prompts.run(cfg)
    task = load_task(out / "task.json")
    assert {g["keyword"]: len(g["reference_sample_idx"]) for g in task["subgroups"]} == SIZES
    assert "refset=imbalanced is not applied to task_file" in caplog.text
    per_keyword = Counter(record["keyword"] for record in iter_jsonl(out / "prompts.jsonl"))
    # ceil(total_gen * |ref_s| / |ref|): 180 * 4/18, 180 * 4/18, 180 * 10/18
    assert per_keyword == {"bar chart": 40, "pie chart": 40, "line chart": 100}
