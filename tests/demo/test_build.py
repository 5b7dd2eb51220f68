"""The demo domain builder: counts, truth, truthful Q/A, determinism, the CLI app and its lock."""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from PIL import Image

import mmgen.demo.build as build_module
from mmgen.contracts import load_reference
from mmgen.demo import build_demo, ensure_demo_data
from mmgen.demo.charts import CHART_KINDS, DISTRACTOR_KINDS, KINDS, describe, make_qa
from mmgen.demo.kinds import draw

REPO = Path(__file__).resolve().parents[2]
SMALL = {"reference": {"bar": 2, "line": 2, "pie": 2}, "eval": {"bar": 1, "line": 1, "pie": 1},
         "pool": {kind: 1 for kind in KINDS}}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    build_demo(root, seed=0)
    return root


def _truth(root: Path) -> dict:
    return json.loads((root / "truth.json").read_text())


def test_counts_and_kinds(demo):
    truth = _truth(demo)
    reference = load_reference(demo / "reference.json")
    assert reference["image_folder"] == "" and reference["dataset_description"]
    reference_kinds = Counter(truth[s["image_1"]]["kind"] for s in reference["samples"])
    assert sum(reference_kinds.values()) >= 60 and set(reference_kinds) == set(CHART_KINDS)
    assert len(set(reference_kinds.values())) == 3  # unequal subgroups, like a real reference set
    pool = sorted(path for path in truth if path.startswith("pool/"))
    assert len(pool) >= 600
    pool_kinds = Counter(truth[path]["kind"] for path in pool)
    assert all(pool_kinds[kind] >= 50 for kind in CHART_KINDS), pool_kinds
    distractors = sum(pool_kinds[kind] for kind in DISTRACTOR_KINDS)
    assert distractors / len(pool) >= 0.2 and all(pool_kinds[k] for k in DISTRACTOR_KINDS)
    assert all(re.fullmatch(r"pool/img_\d{5}\.png", path) for path in pool)  # names hide the kind
    evaluation = load_reference(demo / "eval.json")
    eval_images = {s["image_1"] for s in evaluation["samples"]}
    assert len(evaluation["samples"]) >= 300 and len(eval_images) >= 100
    assert all(p.startswith("eval/") for p in eval_images)
    training = load_reference(demo / "train.json")
    train_images = {s["image_1"] for s in training["samples"]}
    assert len(training["samples"]) >= 300 and all(p.startswith("train/") for p in train_images)
    assert set(Counter(truth[p]["kind"] for p in train_images)) == set(CHART_KINDS)


def test_training_charts_are_new_pictures(demo):
    """The skyline's charts repeat no reference, eval or pool image, byte for byte."""
    digests = {}
    for path in sorted(demo.rglob("*.png")):
        digests.setdefault(path.read_bytes(), []).append(path.parent.name)
    assert not [folders for folders in digests.values()
                if "train" in folders and len(folders) > 1]


def test_truth_covers_every_image_written(demo):
    truth = _truth(demo)
    on_disk = {p.relative_to(demo).as_posix() for p in demo.rglob("*.png")}
    assert on_disk == set(truth)
    for path, entry in truth.items():
        assert entry["kind"] in KINDS and isinstance(entry["title"], str), path
        if entry["kind"] in CHART_KINDS:
            assert len(entry["data"]["labels"]) == len(entry["data"]["values"]) >= 2, path
        if entry["kind"] == "map":
            assert all({"name", "x", "y"} <= set(o) for o in entry["data"]["objects"]), path
    with Image.open(demo / "pool/img_00000.png") as image:
        assert 224 <= min(image.size) and max(image.size) <= 320


def _number(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


LOOKUP = [r"What is the value of (.+) in the chart\?",
          r"What percentage of the pie does (.+) account for\?", r"What was the value in (.+)\?"]
EXTREME = [r"Which (?:bar|slice) has the (highest|lowest) value\?",
           r"In which (?:year|month) was the value (highest|lowest)\?"]
PAIR = [r"What is the (difference) between (.+) and (.+)\?", r"What is the (sum) of (.+) and (.+)\?",
        r"By how much did the value (differ) between (.+) and (.+)\?",
        r"Is the value of (.+) (greater) than that of (.+)\?"]
COUNT = [r"How many (?:bars|slices) does the chart have\?",
         r"How many (?:years|months) are shown on the x-axis\?"]


def check_answer(entry: dict, question: str, answer: str) -> bool | None:
    """Recompute the answer of the common question styles from truth; None if not recognised."""
    kind, data = entry["kind"], entry["data"]
    if kind not in CHART_KINDS or "series" in data:
        return None
    pairs = dict(zip(data["labels"], data["values"]))
    for pattern in LOOKUP:
        if match := re.fullmatch(pattern, question):
            return answer == _number(pairs[match[1]])
    for pattern in EXTREME:
        if match := re.fullmatch(pattern, question):
            return answer == (max if match[1] == "highest" else min)(pairs, key=pairs.get)
    for pattern in PAIR:
        if match := re.fullmatch(pattern, question):
            groups = match.groups()
            if groups[1] == "greater":
                return answer == ("Yes" if pairs[groups[0]] > pairs[groups[2]] else "No")
            a, b = pairs[groups[1]], pairs[groups[2]]
            expected = a + b if groups[0] == "sum" else abs(a - b)
            return float(answer) == pytest.approx(expected, abs=0.051)
    for pattern in COUNT:
        if re.fullmatch(pattern, question):
            return answer == str(len(pairs))
    return None


def test_reference_answers_are_truthful(demo):
    truth = _truth(demo)
    checked = 0
    for sample in load_reference(demo / "reference.json")["samples"]:
        question = sample["conversations"][0]["value"]
        assert question.startswith("<image>\n")
        verdict = check_answer(truth[sample["image_1"]], question.removeprefix("<image>\n"),
                               sample["conversations"][1]["value"])
        assert verdict is not False, sample
        checked += verdict is True
    assert checked >= 20  # enough samples fall in the recognised styles to make this a check


@pytest.mark.parametrize("kind", KINDS)
def test_make_qa_and_describe_are_truthful_and_deterministic(kind):
    for index in range(15):
        _, entry = draw(kind, random.Random(f"qa-test:{kind}:{index}"))
        items = make_qa(entry, random.Random(index), 6)
        assert items == make_qa(entry, random.Random(index), 6)
        assert len(items) == 6 and all(set(item) == {"Q", "A", "R"} for item in items)
        for item in items:
            assert item["R"].endswith(f"So the answer is {item['A']}.")
            assert check_answer(entry, item["Q"], item["A"]) is not False, (entry, item)
        text = describe(entry)
        if kind in ("bar", "pie", "line"):
            assert all(label in text for label in entry["data"]["labels"])
            assert all(_number(v) in text for v in entry["data"]["values"])
        if kind == "map":
            assert all(o["name"] in text for o in entry["data"]["objects"])


def test_map_directions_follow_positions():
    _, entry = draw("map", random.Random("directions"))
    places = {o["name"]: o for o in entry["data"]["objects"]}
    seen = 0
    for item in make_qa(entry, random.Random(1), 30):
        if match := re.fullmatch(r"In which direction is (.+) from (.+)\?", item["Q"]):
            a, b = places[match[1]], places[match[2]]
            assert item["A"].startswith("North" if a["y"] > b["y"] else "South")
            assert item["A"].endswith("east" if a["x"] > b["x"] else "west")
            seen += 1
    assert seen


def test_same_seed_same_bytes_other_seed_differs(demo, tmp_path):
    first, again, other = tmp_path / "first", tmp_path / "again", tmp_path / "other"
    build_demo(first, seed=0, counts=SMALL)
    build_demo(again, seed=0, counts=SMALL)
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert len(files) == 6 + 3 + 7 + 4  # images, then reference, eval, train and truth json
    for name in files:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    # an image depends only on the seed and its name, not on how many others were drawn
    for name in ["reference/bar_000.png", "reference/pie_001.png", "eval/line_000.png"]:
        assert (first / name).read_bytes() == (demo / name).read_bytes(), name
    build_demo(other, seed=1, counts=SMALL)
    for name in ["reference.json", "truth.json", "reference/bar_000.png", "pool/img_00000.png"]:
        assert (other / name).read_bytes() != (first / name).read_bytes(), name


def test_rebuild_removes_images_it_did_not_write(tmp_path):
    build_demo(tmp_path, seed=0, counts=SMALL)
    (tmp_path / "pool/img_99999.png").write_bytes(b"stale")
    build_demo(tmp_path, seed=0, counts=SMALL)
    assert not (tmp_path / "pool/img_99999.png").exists()


def test_cli_app_writes_the_files_and_nothing_in_the_cwd(tmp_path):
    data_dir, cwd = tmp_path / "data", tmp_path / "cwd"
    cwd.mkdir()
    # Hydra merges a dict override into the default, so every kind is named
    small = ["counts.reference={bar:2,line:1,pie:1}", "counts.eval={bar:1,line:0,pie:0}",
             "counts.pool={bar:2,pie:1,line:1,map:1,shapes:1,noise:1,table:1}",
             "counts.train={bar:0,line:1,pie:0}"]
    result = subprocess.run([sys.executable, "-m", "mmgen.demo", f"data_dir={data_dir}", "seed=3",
                             *small], cwd=cwd, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "reference.json (4 samples)" in result.stdout + result.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "eval", "eval.json", "pool", "reference", "reference.json", "train", "train.json",
        "truth.json"]
    assert len(json.loads((data_dir / "train.json").read_text())["samples"]) == 2
    assert len(list((data_dir / "pool").glob("*.png"))) == 8
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("override, key", [("sed=1", "sed"), ("seed=many", "seed"),
                                           ("counts.pool.ufo=3", "ufo")])
def test_builder_config_rejects_typos_naming_the_key(override, key):
    import mmgen.demo.__main__  # noqa: F401  (registers the schema)

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("demo_build", overrides=["data_dir=x", override])
            build_module.check_counts(dict(cfg.counts))  # unknown kinds fail here
    except (ConfigCompositionException, ValueError) as error:
        assert key in str(error) + str(error.__cause__)
    else:
        pytest.fail(f"{override} was accepted")
    finally:
        GlobalHydra.instance().clear()


def test_ensure_demo_data_builds_once_under_concurrency(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "DEFAULT_COUNTS", SMALL)
    calls = []
    real_build = build_module.build_demo
    monkeypatch.setattr(build_module, "build_demo",
                        lambda root, seed: calls.append(seed) or real_build(root, seed))
    threads = [threading.Thread(target=ensure_demo_data, args=(tmp_path / "d",)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [0]
    assert (tmp_path / "d" / "reference.json").is_file()
    ensure_demo_data(tmp_path / "d")
    assert calls == [0]


def test_ensure_demo_data_rebuilds_a_build_older_than_the_training_split(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "DEFAULT_COUNTS", SMALL)
    build_demo(tmp_path, seed=0, counts=SMALL)
    (tmp_path / "train.json").unlink()  # what a build from before train.json left
    ensure_demo_data(tmp_path)
    rebuilt = json.loads((tmp_path / "train.json").read_text())
    assert rebuilt["samples"] == []  # SMALL has no train split
