"""`mmgen.prepare` on small local datasets shaped like ChartQA, AI2D and SpatialEval: the files it
writes, their contents, determinism, resume, clear errors, and a prepared benchmark running the
pipeline offline up to generation."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers import benchmarks

from mmgen import prepare
from mmgen.contracts import (
    load_dataset,
    load_eval_set,
    load_reference,
    read_json,
    sample_image_path,
)
from mmgen.errors import StageStop, UserError
from mmgen.metrics import chosen_option, option_letters
from mmgen.prepare_files import sample
from mmgen.prepare_rows import parse_options


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch):
    """Keep `datasets`' Arrow cache out of the home folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE",
                        str(tmp_path_factory.getbasetemp() / "hf_datasets_cache"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """The three local datasets, written once."""
    base = tmp_path_factory.mktemp("sources")
    ai2d_hub, ai2d_train = benchmarks.write_ai2d(base / "ai2d_hub", base / "ai2d_train")
    spatial_hub, spatial_generated = benchmarks.write_spatialeval(base / "spatialeval",
                                                                  base / "spatial_generated")
    return {"chartqa": benchmarks.write_chartqa(base / "chartqa"), "ai2d_hub": ai2d_hub,
            "ai2d_train": ai2d_train, "spatial_hub": spatial_hub,
            "spatial_generated": spatial_generated}


def chartqa(make_config, sources, root: Path, *overrides: str, **where):
    return make_config("dataset=chartqa", f"dataset.root={root}",
                       f"dataset.source.path={sources['chartqa']}", *overrides, **where)


def ai2d(make_config, sources, root: Path, *overrides: str, **where):
    train = sources["ai2d_train"]
    return make_config("dataset=ai2d", f"dataset.root={root}",
                       f"dataset.source.path={sources['ai2d_hub']}",
                       *(f"dataset.source.{role}.path={train}" for role in ("reference", "train",
                                                                             "pool")),
                       "dataset.source.reference.count=4", *overrides, **where)


def spatial_map(make_config, sources, root: Path, *overrides: str, **where):
    generated = sources["spatial_generated"]
    return make_config("dataset=spatial_map", f"dataset.root={root}",
                       f"dataset.source.path={sources['spatial_hub']}",
                       *(f"dataset.source.{role}.path={generated}"
                         for role in ("reference", "train", "pool")),
                       "dataset.source.reference.count=5", "dataset.source.pool.count=4",
                       *overrides, **where)


def run(cfg) -> dict:
    prepare.validate(cfg)
    return prepare.compute(cfg, Path(cfg.paths.out_dir))


def files_by_name(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def questions(samples: list[dict]) -> list[str]:
    return [sample["conversations"][0]["value"] for sample in samples]


def answers(samples: list[dict]) -> list[str]:
    return [sample["conversations"][1]["value"] for sample in samples]


def test_chartqa_gives_reference_eval_skyline_and_pool(make_config, sources, tmp_path):
    root = tmp_path / "chartqa"
    stats = run(chartqa(make_config, sources, root))
    reference = load_reference(root / "reference.json")["samples"]
    assert questions(reference) == [f"<image>\nWhat is the value of bar {i}?"
                                    for i in range(20, 24)]  # all of val, in order
    assert answers(reference) == ["30", "31", "32", "33"]  # the label list's entry
    held_out = load_eval_set(root / "eval.json")
    assert held_out["metric"] == "relaxed_accuracy"
    assert [s["split"] for s in held_out["samples"]] == ["human", "augmented"] * 2
    assert [s["id"] for s in held_out["samples"]] == [f"test-{i}" for i in range(4)]
    train = load_dataset(root / "train.json")["samples"]
    assert len(train) == 7 and stats["train_dropped_for_eval_images"] == 1  # row 7 shows a
    eval_images = {s["image_1"] for s in held_out["samples"]}                # test chart
    assert not eval_images & {s["image_1"] for s in train}
    pool = sorted(p.name for p in (root / "pool").iterdir())
    assert len(pool) == 6 == stats["pool_images"]  # 8 train rows: one repeat, one test chart
    assert not eval_images & set(pool)
    for folder in ("images", "pool"):
        for path in (root / folder).iterdir():  # named by content, as the pool cache keys them
            assert path.stem == hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    for record in reference + held_out["samples"] + train:
        assert (root / "images" / record["image_1"]).is_file()
    assert read_json(tmp_path / "out" / "prepare.json")["counts"] == stats  # the runner's copy


def test_ai2d_writes_lettered_options_from_the_answer_index(make_config, sources, tmp_path):
    root = tmp_path / "ai2d"
    stats = run(ai2d(make_config, sources, root))
    held_out = load_eval_set(root / "eval.json")
    assert held_out["metric"] == "multiple_choice" and len(held_out["samples"]) == 5
    first = held_out["samples"][0]  # row 0: seed 200, answer "0"
    assert first["options"] == ["egg 200", "larva 200", "pupa 200", "adult 200"]
    assert first["conversations"][0]["value"] == (
        "<image>\nWhich stage comes after stage 200 in the diagram?\nOptions:\n"
        "A. egg 200\nB. larva 200\nC. pupa 200\nD. adult 200")
    for number, record in zip(range(200, 205), held_out["samples"]):
        right = "ABCD"[number % 4]
        assert record["conversations"][1]["value"] == f"{right}. {record['options'][number % 4]}"
        assert chosen_option(record["conversations"][1]["value"],
                             option_letters(record["options"])) == right  # the metric reads it
        assert "split" not in record
    assert stats["reference_questions"] == 4 and stats["train_questions"] == 9
    assert len(list((root / "pool").iterdir())) == 9


def test_spatial_map_keeps_its_task_and_reads_options_from_the_text(make_config, sources,
                                                                    tmp_path):
    root = tmp_path / "spatial_map"
    stats = run(spatial_map(make_config, sources, root))
    held_out = load_eval_set(root / "eval.json")["samples"]
    assert [s["id"] for s in held_out] == [f"spatialmap.vqa.{m}.{q}" for m in (400, 401, 402)
                                           for q in (0, 1)]  # the maze rows are left out
    for record in held_out:
        *_, number, question = record["id"].split(".")
        right = (int(number) + int(question)) % 4
        assert record["options"] == benchmarks.DIRECTIONS
        assert record["conversations"][1]["value"] == \
            f"{'ABCD'[right]}. {benchmarks.DIRECTIONS[right]}"
    assert len(load_reference(root / "reference.json")["samples"]) == 5
    assert stats["pool_images"] == 4 and stats["train_questions"] == 20


def test_same_config_and_seed_give_the_same_bytes(make_config, sources, tmp_path):
    for name in ("a", "b"):
        run(ai2d(make_config, sources, tmp_path / name, out_dir=tmp_path / f"out_{name}"))
    first, second = files_by_name(tmp_path / "a"), files_by_name(tmp_path / "b")
    assert first == second and len(first) > 10
    run(ai2d(make_config, sources, tmp_path / "c", "seed=1", out_dir=tmp_path / "out_c"))
    assert questions(load_reference(tmp_path / "c" / "reference.json")["samples"]) != \
        questions(load_reference(tmp_path / "a" / "reference.json")["samples"])


def test_rerun_restores_what_is_missing_and_otherwise_writes_nothing(make_config, sources,
                                                                     tmp_path, caplog):
    root = tmp_path / "chartqa"
    cfg = chartqa(make_config, sources, root)
    run(cfg)
    before = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    caplog.set_level("INFO")
    run(cfg)
    assert "already prepared" in caplog.text
    assert {path: path.stat().st_mtime_ns for path in before} == before
    assert prepare.complete(cfg)
    lost = [min((root / "pool").iterdir()), min((root / "images").iterdir())]
    kept_bytes = {path: path.read_bytes() for path in lost}
    for path in lost:
        path.unlink()
    assert not prepare.complete(cfg)
    run(cfg)
    assert {path: path.read_bytes() for path in lost} == kept_bytes
    untouched = [path for path in before if path not in lost and path.suffix == ".png"]
    assert all(path.stat().st_mtime_ns == before[path] for path in untouched)


def test_a_killed_preparation_resumes_without_rewriting_images(make_config, sources, tmp_path,
                                                               monkeypatch):
    root = tmp_path / "chartqa"
    cfg = chartqa(make_config, sources, root)

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "pool_images", killed)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    written = {path: path.stat().st_mtime_ns for path in (root / "images").iterdir()}
    assert len(written) == 4 + 4 + 6 and not prepare.complete(cfg)  # train: 6 distinct charts
    monkeypatch.undo()
    assert run(cfg)["pool_images"] == 6 and prepare.complete(cfg)
    assert {path: path.stat().st_mtime_ns for path in written} == written


def test_a_pool_prepare_does_not_make_is_never_touched(make_config, sources, tmp_path):
    own_pool = tmp_path / "my_pool"
    own_pool.mkdir()
    (own_pool / "mine.png").write_bytes(benchmarks.image(7))
    root = tmp_path / "chartqa"
    run(chartqa(make_config, sources, root))
    stats = run(chartqa(make_config, sources, root, f"dataset.pool={own_pool}",
                        "dataset.source.pool.split=null"))
    assert "pool_images" not in stats and [p.name for p in own_pool.iterdir()] == ["mine.png"]


def test_another_recipe_replaces_what_an_earlier_one_left(make_config, sources, tmp_path):
    root = tmp_path / "ai2d"
    run(ai2d(make_config, sources, root))
    stats = run(ai2d(make_config, sources, root, "dataset.source.pool.count=3"))
    assert len(list((root / "pool").iterdir())) == 3 and stats["stale_files_removed"] == 6


def test_samples_keep_each_split_in_proportion():
    strata = ["human"] * 30 + ["augmented"] * 10
    chosen = sample(strata, 8, seed=0, salt="reference")
    assert sorted(strata[p] for p in chosen) == ["augmented"] * 2 + ["human"] * 6
    assert chosen == sample(strata, 8, seed=0, salt="reference") != \
        sample(strata, 8, seed=1, salt="reference")
    assert sample(strata, None, 0, "x") == list(range(40))


@pytest.mark.parametrize(("text", "options"), [
    ("Where is it? Available options:\nA. Northeast\nB. Northwest\nC. Southwest\nD. Southeast.",
     ["Northeast", "Northwest", "Southwest", "Southeast"]),
    (("Which object is in the Northeast of R? Available options: A. B, B. C, C. None of the "
     "Options"), ["B", "C", "None of the Options"]),  # options that are letters themselves
    (("Where? Available options: A. North, B. Northeast, C. Southwest, D. Northwest, E. Cannot "
     "be determined"), ["North", "Northeast", "Southwest", "Northwest", "Cannot be determined"]),
    ("How many shops? (A) 3 (B) 0 (C) 12.5", ["3", "0", "12.5"]),
    ("Options: A) left B) right\nAnswer with the letter.", ["left", "right"]),
    ("Is Plan B. better than plan A?", None),  # letters in prose are not options
    ("No options here.", None),
])
def test_options_are_read_from_question_text(text, options):
    assert parse_options(text) == options


@pytest.mark.parametrize(("overrides", "message"), [
    (["dataset.source.reference.split=validation"], "Unknown split \"validation\""),
    (["dataset.source.columns.question=question"], "no column 'question'"),
    (["dataset.source.path=./nowhere/chartqa"], "local dataset folder './nowhere/chartqa' not"),
    (["dataset.source.answer_format=option_index"], "needs the options"),
    (["dataset.source.answer_format=option_letter", "dataset.source.options_in_question=true"],
     "rows of"),
    (["dataset.source.reference.count=0"], "must be at least 1"),
    (["dataset.pool=pool.txt"], "must name a folder inside dataset.root"),
    (["dataset.pool=/somewhere/else"], "must name a folder inside dataset.root"),
])
def test_bad_sources_fail_naming_the_key(make_config, sources, tmp_path, overrides, message):
    cfg = chartqa(make_config, sources, tmp_path / "root", *overrides)
    with pytest.raises(UserError, match="dataset.source") as raised:
        run(cfg)
    assert message in str(raised.value)


def test_an_unreachable_hub_says_how_to_work_offline(make_config, sources, tmp_path,
                                                     monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # as with no network at all
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cfg = chartqa(make_config, sources, tmp_path / "root", "dataset.source.path=nobody/nothing")
    with pytest.raises(UserError, match="Couldn't reach 'nobody/nothing'.*Load it once with"):
        run(cfg)


def test_inputs_made_by_hand_are_never_overwritten(make_config, sources, tmp_path):
    root = tmp_path / "by_hand"
    root.mkdir()
    (root / "reference.json").write_text("{}")
    with pytest.raises(UserError, match="already holds reference.json, not written by"):
        run(chartqa(make_config, sources, root))
    assert (root / "reference.json").read_text() == "{}"


DEMO_COUNTS = {"reference": {"bar": 4, "line": 3, "pie": 3},
               "eval": {"bar": 1, "line": 1, "pie": 1},
               "pool": {"bar": 8, "line": 6, "pie": 6, "map": 1, "noise": 1}}


def test_prepared_chartqa_runs_offline_up_to_generation(make_config, tmp_path, monkeypatch):
    """Demo charts packed as a ChartQA-shaped dataset, prepared, then partition, retrieve and
    prompts with the tiny CLIP; the dry-run teacher writes the requests."""
    from mmgen import runner
    from mmgen.demo.build import build_demo

    demo = tmp_path / "demo"
    build_demo(demo, seed=0, counts=DEMO_COUNTS)
    demo_reference = load_reference(demo / "reference.json")
    reference = demo_reference["samples"]
    charts = sorted((demo / "pool").iterdir())
    source = benchmarks.write_splits(tmp_path / "chartqa", benchmarks.chartqa_features(), {
        "val": {"image": [benchmarks.cell((demo / sample_image_path(demo_reference, s))
                                          .read_bytes()) for s in reference],
                "query": [s["conversations"][0]["value"].replace("<image>\n", "")
                          for s in reference],
                "label": [[s["conversations"][1]["value"]] for s in reference],
                "human_or_machine": [i % 2 for i in range(len(reference))]},
        "train": benchmarks.chartqa_rows([path.read_bytes() for path in charts]),
        "test": benchmarks.chartqa_rows(
            [path.read_bytes() for path in sorted((demo / "eval").iterdir())])})
    root = tmp_path / "prepared"
    cfg = make_config("dataset=chartqa", f"dataset.root={root}", f"dataset.source.path={source}",
                      "clip=demo_tiny", "clip.num_workers=0", "backend=dry_run", "total_gen=12")
    with pytest.raises(StageStop, match="dry run"):
        runner.run(cfg, "generate")  # prepare, partition, retrieve, prompts, generate
    assert load_eval_set(root / "eval.json")["samples"]
    out = Path(cfg.paths.out_dir)
    task = read_json(out / "task.json")
    candidates = [path for group in task["subgroups"] for path in group["candidate_image_paths"]]
    assert candidates and all(path.startswith("pool/") and (root / path).is_file()
                              for path in candidates)
    requests = (out / "requests.jsonl").read_text().splitlines()
    assert len(requests) >= 12 and all(json.loads(line) for line in requests)
    assert os.path.getsize(out / "prompts.jsonl") > 0
