"""Stage evaluate: the target model answers the held-out eval set, and the answers are scored.

    python -m mmgen.evaluate +experiment=NAME                       # the model `train` made
    python -m mmgen.evaluate +experiment=NAME evaluate.model=base   # the untrained target model
    python -m mmgen.evaluate +experiment=NAME evaluate.predictions=answers.jsonl  # made elsewhere

Writes `eval/predictions.jsonl` (one record per eval sample, in eval-set order: id, split,
question, answer, prediction, and whether each metric counts it right) and `eval/metrics.json`
(the dataset's metric and the variants reported beside it, each with accuracy, count, correct
and a 95% bootstrap CI, per split and as the mean of the splits). predictions.jsonl is also the
resume log: a killed run keeps every answer it got, and a rerun asks only for the rest, unless
the model, its settings or the eval set changed (the old file is then set aside).

The `baseline` stage does the same for the base model into `eval_base/`, for the report.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mmgen import CONF_DIR
from mmgen.contracts import (
    AppendLog,
    ContractError,
    iter_jsonl,
    read_json,
    read_log,
    write_json,
    write_jsonl,
)
from mmgen.errors import UserError
from mmgen.evaluation import Evaluator, Question, build_evaluator
from mmgen.evaluation.eval_set import (
    EvalSample,
    choice,
    eval_set_path,
    load_samples,
    metric_name,
    questions,
)
from mmgen.metrics import RULES, accuracy, score
from mmgen.stage import file_digest, launch, out_dir
from mmgen.vlm.resume import LogWriter

log = logging.getLogger(__name__)
EVAL_DIR, BASE_DIR = "eval", "eval_base"
PREDICTIONS, METRICS = "predictions.jsonl", "metrics.json"
KEY_FILE = ".predictions.key.json"  # what predictions.jsonl's answers were made by
# backend settings that change how fast answers come, never what they are
BACKEND_RUNTIME = ("concurrency", "timeout_s", "max_attempts", "api_key_env")


# ---------------------------------------------------------------- stage entry points


def compute(cfg: DictConfig, work_dir: Path) -> dict:
    """Evaluate what evaluate.model names (or score evaluate.predictions) into work_dir/eval/."""
    if cfg.evaluate.predictions:
        return score_file(cfg, work_dir / EVAL_DIR, Path(cfg.evaluate.predictions))
    return evaluate_model(cfg, work_dir / EVAL_DIR, base=is_base(cfg))


def compute_base(cfg: DictConfig, work_dir: Path) -> dict:
    """Evaluate the untrained target model into work_dir/eval_base/ (the `baseline` stage)."""
    return evaluate_model(cfg, work_dir / BASE_DIR, base=True)


def upstream(cfg: DictConfig) -> tuple[str, ...]:
    """`train`, unless the base model or a predictions file is evaluated."""
    return () if is_base(cfg) or cfg.evaluate.predictions else ("train",)


def inputs(cfg: DictConfig) -> dict[str, str]:
    """Digests of the eval set and of a predictions file to score."""
    files = [Path(cfg.dataset.root) / cfg.dataset.eval] if cfg.dataset.eval else []
    files += [Path(cfg.evaluate.predictions)] if cfg.evaluate.predictions else []
    return {str(path): file_digest(path) for path in files if path.is_file()}


def validate(cfg: DictConfig) -> None:
    """Config checks that need no results: eval set, metric, prompt, predictions file, backend."""
    eval_set_path(cfg)
    metric_name(cfg)
    if "{question}" not in cfg.evaluate.prompt:
        raise UserError(f"evaluate.prompt '{cfg.evaluate.prompt}' has no {{question}} "
                        "placeholder: the model would never see the question")
    if cfg.evaluate.predictions:
        if not Path(cfg.evaluate.predictions).is_file():
            raise UserError(f"evaluate.predictions: {cfg.evaluate.predictions} not found")
        return
    build_evaluator(cfg, None if is_base(cfg) else train_dir(cfg))  # checks settings, loads nothing


def is_base(cfg: DictConfig) -> bool:
    return choice(cfg.evaluate.model) == "base"


def train_dir(cfg: DictConfig) -> Path:
    """Where the train stage saved the trained model."""
    return out_dir(cfg) / "train"


# ---------------------------------------------------------------- answering, resumable


def evaluate_model(cfg: DictConfig, folder: Path, base: bool) -> dict:
    """Answer every eval question not yet answered by this model, then score all answers."""
    samples = load_samples(cfg)
    evaluator = build_evaluator(cfg, None if base else train_dir(cfg))
    predictions_path = folder / PREDICTIONS
    resume_or_restart(predictions_path, prediction_key(cfg, evaluator, base))
    wanted = {sample.id for sample in samples}
    done = {r["id"]: r["prediction"] for r in read_log(predictions_path)
            if r.get("id") in wanted and isinstance(r.get("prediction"), str)}
    todo = [q for q in questions(samples, cfg.evaluate.prompt) if q.id not in done]
    log.info("evaluate: %d questions, %d answered before, %d to ask %s", len(samples),
             len(done), len(todo), evaluator.name)
    started = time.perf_counter()
    with AppendLog(predictions_path) as predictions_log, tqdm(
            total=len(todo), desc="evaluate", unit="question",
            disable=not cfg.evaluate.progress) as bar:
        writer = LogWriter(predictions_log)

        def write(question: Question, prediction: str) -> None:
            writer.append({"id": question.id, "prediction": prediction})
            done[question.id] = prediction
            bar.update(1)

        try:
            if todo:
                evaluator.predict(todo, Path(cfg.dataset.root), write)
        finally:
            writer.close()  # every answer made reaches the log, even on a crash
    seconds = time.perf_counter() - started
    failures = getattr(evaluator, "failures", {})
    if failures:
        first = next(iter(failures.items()))
        raise UserError(f"{len(failures)} of {len(samples)} eval questions got no answer (first:"
                        f" '{first[0]}': {first[1]}); the {len(done)} answers made are kept in "
                        f"{predictions_path}: rerun to ask for the rest")
    stats = write_results(cfg, folder, samples, done, "base" if base else "trained",
                          evaluator.name)
    rate = round(len(todo) / seconds, 2) if todo and seconds else None
    return {**stats, "answered": len(todo), "resumed": len(samples) - len(todo),
            "answers_per_s": rate}


def prediction_key(cfg: DictConfig, evaluator: Evaluator, base: bool) -> dict:
    """What the answers depend on: model, backend code and settings, prompt, eval set."""
    backend = OmegaConf.to_container(cfg.evaluate.backend, resolve=True, enum_to_str=True)
    model_files = [] if base else sorted(
        path for path in train_dir(cfg).glob("*")
        if path.is_file() and path.name.startswith(("model.", "adapter_")))
    source = inspect.getsource(inspect.getmodule(type(evaluator)))
    return {"backend": {k: v for k, v in backend.items() if k not in BACKEND_RUNTIME},
            "code": hashlib.sha256(source.encode()).hexdigest()[:16],
            "model": "base" if base else {p.name: file_digest(p) for p in model_files},
            "prompt": cfg.evaluate.prompt, "max_new_tokens": cfg.evaluate.max_new_tokens,
            "eval_set": file_digest(eval_set_path(cfg))}


def resume_or_restart(predictions_path: Path, key: dict) -> None:
    """Keep predictions.jsonl if the same model made it; else set it aside and start afresh."""
    key_path = predictions_path.parent / KEY_FILE
    if predictions_path.exists():
        if (read_json(key_path) if key_path.is_file() else None) == key:
            return
        if predictions_path.stat().st_size == 0:  # nothing to keep
            predictions_path.unlink()
    if predictions_path.exists():
        stale = predictions_path.with_name("predictions.stale.jsonl")
        predictions_path.replace(stale)
        log.warning("evaluate: %s was made by another model, settings or eval set; moved it "
                    "to %s and starting afresh", predictions_path, stale.name)
    write_json(key_path, key)


# ---------------------------------------------------------------- scoring


def score_file(cfg: DictConfig, folder: Path, path: Path) -> dict:
    """Score a JSONL of {id, prediction} made elsewhere against the eval set; loads no model."""
    samples = load_samples(cfg)
    known = {sample.id for sample in samples}
    predictions: dict[str, str] = {}
    for line_number, record in enumerate(iter_jsonl(path), start=1):
        for key, kind in (("id", (str, int)), ("prediction", str)):
            if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
                raise ContractError(path, f"line {line_number} field '{key}'",
                                    "missing" if key not in record else
                                    f"expected {'a string' if kind is str else 'an id'}, got "
                                    f"{type(record[key]).__name__}")
        sample_id = str(record["id"])
        if sample_id not in known:
            raise ContractError(path, f"line {line_number} field 'id'",
                                f"'{sample_id}' is not an id of the eval set {eval_set_path(cfg)}")
        if sample_id in predictions:
            raise ContractError(path, f"line {line_number} field 'id'",
                                f"a second prediction for '{sample_id}'")
        predictions[sample_id] = record["prediction"]
    missing = [sample.id for sample in samples if sample.id not in predictions]
    if missing:
        raise ContractError(path, "file", f"has no prediction for {len(missing)} of "
                            f"{len(samples)} eval samples (first: {', '.join(missing[:3])})")
    (folder / KEY_FILE).unlink(missing_ok=True)  # not a resumable model run
    return write_results(cfg, folder, samples, predictions, "predictions", str(path))


def write_results(cfg: DictConfig, folder: Path, samples: list[EvalSample],
                  predictions: dict[str, str], evaluated: str, model: str) -> dict:
    """Write predictions.jsonl (eval order, judged) and metrics.json; return headline stats."""
    metric = metric_name(cfg)
    records = []
    for sample in samples:
        prediction = predictions[sample.id]
        record = {"id": sample.id, **({"split": sample.split} if sample.split else {}),
                  "question": sample.question, "answer": sample.answer, "prediction": prediction,
                  "correct": score(metric, prediction, sample.answer, sample.options)}
        records.append(record)
    splits = [sample.split for sample in samples]
    summaries = {name: accuracy([r["correct"][name] for r in records], splits, cfg.seed,
                                cfg.evaluate.resamples) for name in RULES[metric]}
    metrics = {"metric": metric, **summaries[metric],
               "variants": {name: value for name, value in summaries.items() if name != metric},
               "evaluated": evaluated, "model": model,
               "eval_set": str(eval_set_path(cfg)),
               "bootstrap": {"resamples": cfg.evaluate.resamples, "seed": cfg.seed,
                             "level": 0.95}}
    write_jsonl(folder / PREDICTIONS, records)
    write_json(folder / METRICS, metrics)
    by_split = ", ".join(f"{name} {value['accuracy']:.3f}"
                         for name, value in metrics.get("splits", {}).items())
    log.info("evaluate: %s %s %.3f [%.3f, %.3f] on %d questions%s; %s", evaluated, metric,
             metrics["accuracy"], *metrics["ci95"], metrics["count"],
             f" ({by_split})" if by_split else "", folder / METRICS)
    return {key: metrics[key] for key in ("metric", "accuracy", "ci95", "count", "evaluated",
                                          "model")}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from mmgen import runner

    runner.run(cfg, "evaluate")


if __name__ == "__main__":
    launch(main)
