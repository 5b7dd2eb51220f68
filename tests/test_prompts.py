"""The prompts stage: allocation, example and candidate draws, prompt records, bad input."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from mmgen import prompts
from mmgen.contracts import ContractError, iter_prompts, read_json, write_json
from mmgen.stage import _quote_numeric_choice

KEYWORDS = ["bar chart", "pie chart", "line chart"]


def make_task(root: Path, sizes: list[int], candidates: int | list[int] = 20,
              touch_images: bool = False, question: str | None = None) -> Path:
    """A seed-format task file under root with one subgroup per size (images optional)."""
    per_group = candidates if isinstance(candidates, list) else [candidates] * len(sizes)
    samples, subgroups = [], []
    for keyword, size, count in zip(KEYWORDS * 3, sizes, per_group):
        short = keyword.split()[0]
        indices = []
        for number in range(size):
            indices.append(len(samples))
            text = question or f"<image>\nWhat is the largest value in {short} {number}?"
            samples.append({"id": f"{short}-{number}", "image_1": f"{short}_{number:04d}.png",
                            "conversations": [{"from": "human", "value": text},
                                              {"from": "gpt", "value": f"{short} {number}"}]})
        paths = [f"pool/{short}_{number:05d}.png" for number in range(count)]
        subgroups.append({"keyword": keyword, "reference_sample_idx": indices,
                          "candidate_image_paths": paths,
                          "candidate_scores": [round(0.5 - n / 1000, 4) for n in range(count)]})
    task = {"image_folder": "reference", "dataset_description": "chart question answering",
            "samples": samples, "subgroups": subgroups}
    path = root / "task.json"
    write_json(path, task, indent=None)
    if touch_images:
        for relative in [f"reference/{s['image_1']}" for s in samples] + [
                p for g in subgroups for p in g["candidate_image_paths"]]:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).touch()
    return path


def run_prompts(make_config, task_path: Path, *overrides: str, out: str = "out") -> list[dict]:
    """Run the stage on a task file; dataset chartqa, as the demo dataset would build its data."""
    cfg = make_config("dataset=chartqa", "dataset.eval=null", f"task_file={task_path}", f"dataset.root={task_path.parent}",
                      *map(_quote_numeric_choice, overrides), out_dir=task_path.parent / out)
    return list(iter_prompts(prompts.run(cfg) / "prompts.jsonl"))


def test_allocation_of_the_papers_chartqa_split(tmp_path, make_config):
    task_path = make_task(tmp_path, [1203, 198, 519], candidates=[3000, 3000, 3000])
    cfg = make_config(f"task_file={task_path}", "dataset=chartqa", "dataset.eval=null", "total_gen=150000",
                      "check_images=false", out_dir=tmp_path / "out")
    out = prompts.run(cfg)
    counts = Counter()
    with open(out / "prompts.jsonl", "rb") as handle:
        for line in handle:  # ids lead each line: {"id":"bar-chart-000017",...
            counts[line[7:line.index(b"-0")].decode()] += 1
    assert counts == {"bar-chart": 93985, "pie-chart": 15469, "line-chart": 40547}
    assert read_json(out / "stats.json")["prompts"]["prompts"] == 150001


def test_allocation_divides_by_items_per_prompt(tmp_path):
    task = json.loads(make_task(tmp_path, [1203, 198, 519]).read_text())
    assert prompts.allocate(task, 150000, 3) == [31329, 5157, 13516]
    assert prompts.allocate(task, 150000, 1) == [93985, 15469, 40547]


def test_three_examples_from_the_prompts_own_subgroup_same_bytes_twice(tmp_path, make_config):
    task_path = make_task(tmp_path, [8, 5, 6], candidates=[7, 4, 5], touch_images=True)
    task = read_json(task_path)
    records = run_prompts(make_config, task_path, "icl=3", "total_gen=60")
    own = {g["keyword"]: set(g["reference_sample_idx"]) for g in task["subgroups"]}
    for record in records:
        assert len(record["icl_indices"]) == 3 == len(set(record["icl_indices"]))
        assert set(record["icl_indices"]) <= own[record["keyword"]]
        text, *images = record["content"]
        assert text["type"] == "text" and [part["type"] for part in images] == ["image"] * 4
        assert images[-1]["path"] == record["candidate_image"]  # the candidate comes last
        assert [part["path"] for part in images[:3]] == [
            "reference/" + task["samples"][i]["image_1"] for i in record["icl_indices"]]
        for ordinal in ("first", "second", "third"):
            assert f"Refer to the {ordinal} image." in text["text"]
        assert "<image>" not in text["text"]
        assert re.fullmatch(r"(bar|pie|line)-chart-\d{6}", record["id"])
    first = (tmp_path / "out" / "prompts.jsonl").read_bytes()
    run_prompts(make_config, task_path, "icl=3", "total_gen=60", out="again")
    assert (tmp_path / "again" / "prompts.jsonl").read_bytes() == first
    assert b"2026" not in first  # no timestamps
    run_prompts(make_config, task_path, "icl=3", "total_gen=60", "seed=1", out="seed1")
    assert (tmp_path / "seed1" / "prompts.jsonl").read_bytes() != first


def test_examples_and_candidates_are_drawn_without_replacement_then_reshuffled(tmp_path,
                                                                              make_config):
    task_path = make_task(tmp_path, [6], candidates=5)
    records = run_prompts(make_config, task_path, "icl=3", "total_gen=12", "check_images=false")
    assert len(records) == 12
    examples = [record["icl_indices"] for record in records]
    for start in range(0, 12, 2):  # every two prompts use all six examples once
        assert sorted(examples[start] + examples[start + 1]) == list(range(6))
    candidates = [record["candidate_image"] for record in records]
    assert len(set(candidates[:5])) == 5 and len(set(candidates[5:10])) == 5
    assert sorted(Counter(candidates).values()) == [2, 2, 2, 3, 3]
    assert examples[:2] != examples[2:4] or candidates[:5] != candidates[5:10]  # reshuffled
    scores = {f"pool/bar_{n:05d}.png": round(0.5 - n / 1000, 4) for n in range(5)}
    assert all(r["candidate_score"] == scores[r["candidate_image"]] for r in records)


def test_example_text_replaces_the_image_tag_and_drops_special_tags(tmp_path, make_config):
    question = "<image>\nWhat is <|im_end|>the <video>value<image_2> of X? </s>"
    task_path = make_task(tmp_path, [3], candidates=2, question=question)
    [record, *_] = run_prompts(make_config, task_path, "icl=3", "total_gen=3",
                               "check_images=false")
    text = record["content"][0]["text"]
    assert "Question: Refer to the first image.\nWhat is the value of X?" in text
    assert "Question: Refer to the third image.\nWhat is the value of X?" in text
    assert not re.search(r"<\|?/?\w*\|?>", text)


def test_overlong_example_turn_is_cut_at_the_limit_with_a_warning(tmp_path, make_config, caplog):
    question = "<image>\nWhich bar is tallest? " + "Consider every detail. " * 2200  # ~50,000
    task_path = make_task(tmp_path, [2], candidates=2, question=question)
    records = run_prompts(make_config, task_path, "icl=1", "total_gen=4", "check_images=false",
                          "icl.max_turn_chars=300", "dataset.eval=null")
    texts = [record["content"][0]["text"] for record in records]
    assert all(len(text) < 1500 for text in texts)
    assert all("Question: Refer to the first image.\nWhich bar is tallest?" in t for t in texts)
    assert all(prompts.CUT_MARK + "\nAnswer: bar" in text for text in texts)
    warnings = [r.getMessage() for r in caplog.records if "icl.max_turn_chars=300" in r.message]
    assert len(warnings) == 2  # once per reference sample, however many prompts show it
    assert f"reference sample 0 (id bar-0) has a turn of {len(question):,} characters" in " ".join(
        warnings)


def test_text_only_mode_sends_no_candidate(tmp_path, make_config):
    task_path = make_task(tmp_path, [4, 4], candidates=[3, 3])
    records = run_prompts(make_config, task_path, "mode=tqa", "total_gen=6", "check_images=false")
    assert len(records) == 6
    for record in records:
        assert record["candidate_image"] is None and record["candidate_score"] is None
        assert len(record["content"]) == 2  # instruction + the one example's image
        assert '"I", "Q", "R", "A"' in record["content"][0]["text"]


def test_task_description_mode_sends_no_examples(tmp_path, make_config):
    task_path = make_task(tmp_path, [2, 1], candidates=3)
    records = run_prompts(make_config, task_path, "mode=descript_task_desc", "icl=5",
                          "total_gen=9", "min_gen_per_candidate=3", "check_images=false")
    assert Counter(r["keyword"] for r in records) == {"bar chart": 2, "pie chart": 1}
    for record in records:
        assert record["icl_indices"] == []
        assert [part["type"] for part in record["content"]] == ["text", "image"]
        assert "JSON list of 3 objects" in record["content"][0]["text"]


def test_more_examples_than_references_is_a_clear_error(tmp_path, make_config):
    task_path = make_task(tmp_path, [8, 2], candidates=5)
    with pytest.raises(ContractError, match=r"subgroup 1 \('pie chart'\): only 2 reference "
                       r"samples, fewer than the icl.num_examples=3.*icl.with_replacement=true"):
        run_prompts(make_config, task_path, "icl=3", "total_gen=10", "check_images=false")
    records = run_prompts(make_config, task_path, "icl=3", "icl.with_replacement=true",
                          "total_gen=10", "check_images=false")
    pie = [r["icl_indices"] for r in records if r["keyword"] == "pie chart"]
    assert pie and all(len(indices) == 3 and set(indices) == {8, 9} for indices in pie)


def test_a_subgroup_without_candidates_is_named(tmp_path, make_config):
    # retrieval fills empty subgroups, so this guards against one it could not fill
    task = read_json(make_task(tmp_path, [3, 3], candidates=[4, 0]))
    cfg = make_config("total_gen=10")
    with pytest.raises(ContractError, match=r"task.json: subgroup 1 \('pie chart'\): no candidate "
                       r"images \(candidate_image_paths is empty\), yet 5 prompts need one"):
        prompts.check_task(cfg, task, prompts.allocate(task, 10, 1), tmp_path / "task.json")
    prompts.check_task(make_config("total_gen=10", "mode=tqa"), task, [5, 5], "task.json")


def test_images_missing_since_retrieval_are_counted_before_anything_is_written(tmp_path,
                                                                              make_config):
    task_path = make_task(tmp_path, [3, 3], candidates=4, touch_images=True)
    assert len(run_prompts(make_config, task_path, "total_gen=20")) == 20
    before = (tmp_path / "out" / "prompts.jsonl").read_bytes()
    for gone in ["pool/pie_00001.png", "reference/bar_0002.png", "pool/bar_00003.png"]:
        (tmp_path / gone).unlink()  # moved away after partition and retrieval ran
    # the partition digests its images, so it runs again and finds them gone first
    with pytest.raises(ValueError) as caught:
        run_prompts(make_config, task_path, "total_gen=20", "icl=3")
    message = str(caught.value)
    assert "(3 of 14 images missing" in message
    for gone in ["pool/pie_00001.png", "reference/bar_0002.png", "pool/bar_00003.png"]:
        assert gone in message
    assert "check_images=false" in message
    assert (tmp_path / "out" / "prompts.jsonl").read_bytes() == before


def test_an_out_of_range_index_names_the_subgroup_and_index(tmp_path, make_config):
    task_path = make_task(tmp_path, [3, 3])
    task = read_json(task_path)
    task["subgroups"][1]["reference_sample_idx"][2] = 99
    write_json(task_path, task)
    with pytest.raises(ContractError, match=r"subgroup 1 \('pie chart'\).*index 99 is out of range"):
        run_prompts(make_config, task_path, "total_gen=10", "check_images=false")


def test_a_fresh_result_is_not_rewritten(tmp_path, make_config):
    task_path = make_task(tmp_path, [3, 3])
    run_prompts(make_config, task_path, "total_gen=10", "check_images=false")
    prompts_path = tmp_path / "out" / "prompts.jsonl"
    before = prompts_path.stat().st_mtime_ns
    run_prompts(make_config, task_path, "total_gen=10", "check_images=false")
    assert prompts_path.stat().st_mtime_ns == before
    records = run_prompts(make_config, task_path, "total_gen=14", "check_images=false")
    assert len(records) == 14  # a changed config is recomputed


@pytest.mark.slow
def test_demo_prompts_with_three_examples_are_reproducible(tmp_path, make_config):
    from mmgen.demo import tiny_clip

    if not tiny_clip.CHECKPOINT_PATH.is_file():
        pytest.skip("the tiny CLIP checkpoint is not built yet (mmgen/demo/train_tiny_clip.py)")
    outputs = []
    for run_name in ("first", "second"):  # separate caches: everything is recomputed
        cfg = make_config("+experiment=demo", "icl='3'", f"paths.demo_dir={tmp_path / 'demo'}",
                          out_dir=tmp_path / run_name)
        out = prompts.run(cfg)
        outputs.append((out / "prompts.jsonl").read_bytes())
        task = read_json(out / "task.json")
    assert outputs[0] == outputs[1]
    records = [json.loads(line) for line in outputs[0].splitlines()]
    assert len(records) >= 60
    own = {g["keyword"]: set(g["reference_sample_idx"]) for g in task["subgroups"]}
    assert set(own) == {"bar chart", "pie chart", "line chart"}
    for record in records:
        assert len(set(record["icl_indices"])) == 3
        assert set(record["icl_indices"]) <= own[record["keyword"]]
        assert (tmp_path / "demo" / record["candidate_image"]).is_file()
