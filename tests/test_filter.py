"""The filter stage: cheap checks, target-model scores, selection, sharding, caching."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from curation_data import BAD_ITEMS, write_upstream

from mmgen import runner
from mmgen.contracts import iter_jsonl, load_dataset, read_json
from mmgen.errors import StageStop
from mmgen.demo.scorer import DemoTargetScorer


@pytest.fixture
def scored_counts(monkeypatch) -> list[int]:
    """How many samples each scorer call received."""
    calls: list[int] = []
    original = DemoTargetScorer.score

    def counting(self, samples, image_root):
        calls.append(len(samples))
        return original(self, samples, image_root)

    monkeypatch.setattr(DemoTargetScorer, "score", counting)
    return calls


def configure(make_config, curation_demo_root: Path, out: Path, *overrides: str):
    cfg = make_config(f"dataset.root={curation_demo_root}", *overrides, out_dir=out)
    return cfg


def test_filter_keeps_the_highest_losses_and_counts_removals(make_config, curation_demo_root, tmp_path,
                                                             scored_counts):
    out = tmp_path / "out"
    counts = write_upstream(out, curation_demo_root)
    cfg = configure(make_config, curation_demo_root, out)
    runner.run(cfg, "filter", alone=True)

    stats = read_json(out / "stats.json")["filter"]
    assert stats["removed"] == {"length": 1, "choice": 1, "numeric": 1, "duplicate_exact": 1,
                                "duplicate_near": 0}
    scored = counts["samples"] - counts["bad"]
    assert stats["scored"] == scored == sum(scored_counts)
    kept = load_dataset(out / "filtered.json")["samples"]
    assert len(kept) == stats["kept"] == round(0.5 * scored)
    records = list(iter_jsonl(out / "scores.jsonl"))
    assert len(records) == counts["samples"]
    removed_ids = {r["id"]: r["removed_by"] for r in records
                   if r["removed_by"] not in (None, "score")}
    assert sorted(removed_ids.values()) == sorted(["duplicate_exact", *BAD_ITEMS])
    kept_losses = [s["target_loss"] for s in kept]
    dropped = [r["score"] for r in records if r["removed_by"] == "score"]
    assert min(kept_losses) >= max(dropped)
    # provenance survives the filter
    assert all(s["keyword"] and s["prompt_id"] and s["icl_indices"] for s in kept)


def test_identical_rerun_and_new_keep_fraction_do_not_rescore(make_config, curation_demo_root, tmp_path,
                                                              scored_counts):
    out = tmp_path / "out"
    write_upstream(out, curation_demo_root)
    runner.run(configure(make_config, curation_demo_root, out), "filter", alone=True)
    first_calls = len(scored_counts)
    runner.run(configure(make_config, curation_demo_root, out), "filter", alone=True)
    assert len(scored_counts) == first_calls  # fresh: nothing ran
    runner.run(configure(make_config, curation_demo_root, out, "filter.keep_fraction=0.25"), "filter", alone=True)
    assert len(scored_counts) == first_calls  # scores reused from scores.shard-0-of-1.jsonl
    kept = load_dataset(out / "filtered.json")["samples"]
    assert len(kept) == round(0.25 * read_json(out / "stats.json")["filter"]["scored"])


@pytest.mark.parametrize("select", ["low", "random"])
def test_low_and_random_selection(make_config, curation_demo_root, tmp_path, select):
    out = tmp_path / "out"
    write_upstream(out, curation_demo_root)
    runner.run(configure(make_config, curation_demo_root, out, f"filter.select={select}"), "filter", alone=True)
    records = [r for r in iter_jsonl(out / "scores.jsonl") if r["score"] is not None]
    kept = sorted(r["score"] for r in records if r["kept"])
    dropped = sorted(r["score"] for r in records if not r["kept"])
    assert len(kept) == round(0.5 * len(records))
    if select == "low":
        assert max(kept) <= min(dropped)
    else:  # neither the top nor the bottom half: a random draw mixes both
        assert max(kept) > min(dropped) and min(kept) < max(dropped)


def test_sharded_scoring_merges_to_the_unsharded_result(make_config, curation_demo_root, tmp_path,
                                                        scored_counts):
    whole = tmp_path / "whole"
    write_upstream(whole, curation_demo_root)
    runner.run(configure(make_config, curation_demo_root, whole), "filter", alone=True)
    sharded = tmp_path / "sharded"
    write_upstream(sharded, curation_demo_root)
    scored_counts.clear()

    with pytest.raises(StageStop, match="shard 1 of 2 scored"):
        runner.run(configure(make_config, curation_demo_root, sharded, "shard.count=2",
                             "shard.index=1"), "filter", alone=True)
    assert not (sharded / "filtered.json").exists()  # shard 0 is still missing
    runner.run(configure(make_config, curation_demo_root, sharded, "shard.count=2",
                         "shard.index=0"), "filter", alone=True)

    shard_sizes = [len(list(iter_jsonl(sharded / f"scores.shard-{i}-of-2.jsonl"))) - 1
                   for i in range(2)]
    total = read_json(whole / "stats.json")["filter"]["scored"]
    assert sorted(shard_sizes) == [total // 2, total - total // 2]
    assert sum(scored_counts) == total  # each sample scored once, by its own shard
    ids = [[s["id"] for s in load_dataset(folder / "filtered.json")["samples"]]
           for folder in (whole, sharded)]
    assert ids[0] == ids[1]


def test_checks_can_be_switched_off(make_config, curation_demo_root, tmp_path):
    out = tmp_path / "out"
    counts = write_upstream(out, curation_demo_root)
    runner.run(configure(
        make_config, curation_demo_root, out, "filter.checks.exact_duplicates=false",
        "filter.checks.near_duplicates=null", "filter.checks.choices=false",
        "filter.checks.numeric=false", "filter.checks.max_answer_chars=null"), "filter", alone=True)
    stats = read_json(out / "stats.json")["filter"]
    assert sum(stats["removed"].values()) == 0 and stats["scored"] == counts["samples"]
    assert json.loads((out / "scores.jsonl").read_text().splitlines()[0])["score"] is not None
