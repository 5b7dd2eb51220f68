"""The evaluate stage: scoring a predictions file, resuming, the demo and compatible backends, and
the errors a user sees for bad eval sets, predictions files and settings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.eval_data import EVAL_SAMPLES, save_random_demo_model, write_eval_set

from mmgen import evaluate
from mmgen.contracts import ContractError, iter_jsonl, read_json
from mmgen.errors import UserError
from mmgen.demo.answer_server import DemoModelServer


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_root")
    write_eval_set(root)
    return root


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    return save_random_demo_model(tmp_path_factory.mktemp("demo_model") / "model.pt")


@pytest.fixture
def configure(make_config, eval_root, demo_model):
    def _configure(*overrides: str, out_dir: Path | None = None):
        return make_config(f"dataset.root={eval_root}", "dataset.eval=eval.json",
                           f"evaluate.backend.model={demo_model}", "evaluate.progress=false",
                           "evaluate.resamples=500", *overrides, out_dir=out_dir)
    return _configure


def write_predictions(path: Path, predictions: dict) -> Path:
    path.write_text("".join(json.dumps({"id": k, "prediction": v}) + "\n"
                            for k, v in predictions.items()))
    return path


def test_predictions_file_is_scored_without_a_model(configure, tmp_path):
    answers = {"q0": "25.9", "q1": "paris", "q2": "The answer is 6.", "q3": "1,234",
               "q4": "0.45", "q5": "No", "q6": "July", "q7": ""}
    path = write_predictions(tmp_path / "answers.jsonl", answers)
    # an hf backend with no model: it is never built, so nothing is loaded
    cfg = configure(f"evaluate.predictions={path}", "evaluate=hf",
                    "evaluate.backend.model=/no/such/model")
    stats = evaluate.compute(cfg, tmp_path / "run")
    metrics = read_json(tmp_path / "run" / "eval" / "metrics.json")
    # official: q0 (2.8% off), q1 (case), q4 (45% = 0.45), q5 right; q2 sentence, q3 separator
    assert metrics["splits"]["human"] == {**metrics["splits"]["human"], "correct": 2, "count": 3}
    assert metrics["splits"]["augmented"]["correct"] == 2
    assert metrics["splits"]["augmented"]["count"] == 5
    assert metrics["accuracy"] == pytest.approx((2 / 3 + 2 / 5) / 2, abs=1e-4)
    loose = metrics["variants"]["relaxed_accuracy_loose"]
    assert loose["correct"] == 6  # + the sentence and the thousands separator
    assert metrics["evaluated"] == "predictions" and metrics["model"] == str(path)
    assert stats["accuracy"] == metrics["accuracy"] and stats["count"] == 8
    records = list(iter_jsonl(tmp_path / "run" / "eval" / "predictions.jsonl"))
    assert [r["id"] for r in records] == [s[0] for s in EVAL_SAMPLES]  # eval order, one each
    assert records[3] == {"id": "q3", "split": "augmented", "question": "What is the total?",
                          "answer": "1234", "prediction": "1,234",
                          "correct": {"relaxed_accuracy": False, "relaxed_accuracy_loose": True}}


@pytest.mark.parametrize("lines, message", [
    ([{"id": "q0", "prediction": "1"}], "has no prediction for 7 of 8 eval samples (first: q1"),
    ([{"id": "q9", "prediction": "1"}], "line 1 field 'id': 'q9' is not an id of the eval set"),
    ([{"id": "q0", "prediction": "1"}, {"id": "q0", "prediction": "2"}],
     "line 2 field 'id': a second prediction for 'q0'"),
    ([{"id": "q0", "prediction": None}], "line 1 field 'prediction': expected a string"),
    ([{"prediction": "1"}], "line 1 field 'id': missing"),
])
def test_bad_predictions_file_names_line_and_field(configure, tmp_path, lines, message):
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ContractError, match=message.replace("(", r"\(")) as error:
        evaluate.compute(configure(f"evaluate.predictions={path}"), tmp_path / "run")
    assert str(path) in str(error.value)


def predictions_of(folder: Path, subfolder: str = "eval") -> dict[str, str]:
    return {r["id"]: r["prediction"]
            for r in iter_jsonl(folder / subfolder / "predictions.jsonl")}


def test_demo_backend_resumes_a_killed_run(configure, tmp_path):
    cfg = configure("evaluate.model=base", "evaluate.batch_size=3")
    full = evaluate.compute(cfg, tmp_path / "full")
    assert full["answered"] == 8 and full["resumed"] == 0
    expected = predictions_of(tmp_path / "full")
    assert all(isinstance(value, str) for value in expected.values())
    # a run killed after three answers, in the middle of writing the fourth
    killed = tmp_path / "killed" / "eval"
    killed.mkdir(parents=True)
    (killed / evaluate.KEY_FILE).write_bytes((tmp_path / "full" / "eval" /
                                              evaluate.KEY_FILE).read_bytes())
    kept = (tmp_path / "full" / "eval" / "predictions.jsonl").read_text().splitlines()[:3]
    (killed / "predictions.jsonl").write_text("\n".join(kept) + '\n{"id": "q3", "predi')
    resumed = evaluate.compute(cfg, tmp_path / "killed")
    assert resumed["answered"] == 5 and resumed["resumed"] == 3
    assert predictions_of(tmp_path / "killed") == expected
    assert read_json(killed / "metrics.json")["accuracy"] == full["accuracy"]
    # done: a rerun asks nothing
    assert evaluate.compute(cfg, tmp_path / "killed")["answered"] == 0


def test_another_model_starts_the_predictions_afresh(configure, tmp_path):
    evaluate.compute(configure("evaluate.model=base"), tmp_path)
    other = save_random_demo_model(tmp_path / "other.pt", seed=1)
    stats = evaluate.compute(configure("evaluate.model=base", f"evaluate.backend.model={other}"),
                             tmp_path)
    assert stats["answered"] == 8
    assert (tmp_path / "eval" / "predictions.stale.jsonl").is_file()


def test_trained_model_is_read_from_train_folder(configure, tmp_path, demo_model):
    cfg = configure(out_dir=tmp_path)
    with pytest.raises(UserError, match=r"train/model.pt not found.*evaluate.model=base"):
        evaluate.compute(cfg, tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "model.pt").write_bytes(demo_model.read_bytes())
    stats = evaluate.compute(cfg, tmp_path)
    assert stats["evaluated"] == "trained" and stats["answered"] == 8
    assert evaluate.compute_base(cfg, tmp_path)["evaluated"] == "base"
    # the same weights give the same answers
    assert predictions_of(tmp_path, "eval_base") == predictions_of(tmp_path)
    assert evaluate.upstream(cfg) == ("train",)
    assert evaluate.upstream(configure("evaluate.model=base")) == ()


def test_compatible_backend_equals_demo_backend_through_server_faults(configure, tmp_path,
                                                                     demo_model):
    demo = evaluate.compute(configure("evaluate.model=base"), tmp_path / "demo")
    server = DemoModelServer(str(demo_model), rate_500=0.3, rate_429=0.2, retry_after_s=0.01,
                             seed=3)
    with server as base_url:
        cfg = configure("evaluate=compatible", "evaluate.model=base",
                        "evaluate.prompt='{question}'", "evaluate.max_new_tokens=32",
                        f"evaluate.backend.base_url={base_url}",
                        "evaluate.backend.model=demo-target-model",
                        "evaluate.backend.concurrency=4", "evaluate.backend.max_attempts=8")
        served = evaluate.compute(cfg, tmp_path / "served")
    assert server.stats["server"] + server.stats["rate_limit"] > 0  # faults were retried
    assert predictions_of(tmp_path / "served") == predictions_of(tmp_path / "demo")
    assert served["accuracy"] == demo["accuracy"] and served["answered"] == 8


def test_compatible_backend_keeps_answers_and_says_what_failed(configure, tmp_path):
    cfg = configure("evaluate=compatible", "evaluate.model=base",
                    "evaluate.backend.base_url=http://127.0.0.1:9/v1",  # nothing listens
                    "evaluate.backend.model=m", "evaluate.backend.max_attempts=1")
    with pytest.raises(UserError, match=r"8 of 8 eval questions got no answer .*connection"):
        evaluate.compute(cfg, tmp_path)
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_trained_model_on_a_server_needs_its_served_name(configure):
    cfg = configure("evaluate=compatible", "evaluate.backend.base_url=http://localhost:1/v1",
                    "evaluate.backend.model=base-name")
    with pytest.raises(UserError, match="evaluate.backend.trained_model is empty.*lora-modules"):
        evaluate.validate(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["dataset.eval=null"], "dataset.eval is not set for dataset 'demo'"),
    (["dataset.eval=missing.json"], "dataset.eval: .*missing.json not found"),
    (["evaluate.prompt=Describe"], "evaluate.prompt 'Describe' has no {question} placeholder"),
    (["evaluate.predictions=/no/such.jsonl"], "evaluate.predictions: /no/such.jsonl not found"),
    (["evaluate=hf", "evaluate.backend.model=null"], "evaluate.backend.model is empty"),
])
def test_validate_names_the_key(configure, overrides, message):
    with pytest.raises(UserError, match=message):
        evaluate.validate(configure(*overrides))


@pytest.mark.parametrize("extra, metric, message", [
    ({"q3": {"split": None}}, "relaxed_accuracy", "sample 3 field 'split'"),
    ({"q0": {"options": ["only one"]}}, "relaxed_accuracy", "sample 0 field 'options'"),
    ({}, "multiple_choice", r"sample 0 \('q0'\): has no options"),
    ({"q0": {"options": ["1", "2"]}}, "multiple_choice", r"sample 0 \('q0'\) answer: '25.2'"),
])
def test_bad_eval_set_names_sample_and_field(configure, tmp_path, extra, metric, message):
    fields = {sample: {k: v for k, v in values.items() if v is not None}
              for sample, values in extra.items()}
    path = write_eval_set(tmp_path, **fields)
    if extra.get("q3", {}).get("split", 1) is None:  # drop the split of one sample only
        data = json.loads(path.read_text())
        del data["samples"][3]["split"]
        path.write_text(json.dumps(data))
    cfg = configure(f"dataset.root={tmp_path}", f"dataset.metric={metric}", "evaluate.model=base")
    with pytest.raises(ContractError, match=message):
        evaluate.compute(cfg, tmp_path / "run")


def test_multiple_choice_options_given_beside_the_question_reach_the_prompt(configure,
                                                                           tmp_path):
    samples = [("m0", "test", "Which organism is a producer?", "B"),
               ("m1", "test", "Which one eats plants? Options: A. hawk B. rabbit", "rabbit")]
    write_eval_set(tmp_path, samples, m0={"options": ["hawk", "grass"]})
    path = write_predictions(tmp_path / "answers.jsonl", {"m0": "grass", "m1": "(B)"})
    cfg = configure(f"dataset.root={tmp_path}", "dataset.metric=multiple_choice",
                    f"evaluate.predictions={path}")
    assert evaluate.compute(cfg, tmp_path / "run")["accuracy"] == 1.0
    from mmgen.evaluation.eval_set import load_samples, questions

    prompts = [q.prompt for q in questions(load_samples(cfg), "{question}")]
    assert prompts == ["Which organism is a producer?\nA. hawk\nB. grass",
                       "Which one eats plants? Options: A. hawk B. rabbit"]
