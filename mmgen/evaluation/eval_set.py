"""The eval set as the evaluate stage sees it: one question, answer, image, split and option list
per sample, and the prompt each question becomes.

A multiple-choice sample takes its options from its `options` field, else from the options its
question lists ("Options: A. x B. y", "Options: [x, y]"). Options given only in the field are
appended to the prompt as lettered lines, since the model must see them to pick one.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from mmgen.contracts import ContractError, load_eval_set, question_and_answer, sample_image_path
from mmgen.errors import UserError
from mmgen.evaluation import Question
from mmgen.metrics import RULES, chosen_option, option_letters
from mmgen.scoring import IMAGE_TAG
from mmgen.scoring.checks import parse_options


@dataclass(frozen=True)
class EvalSample:
    id: str
    question: str  # without its <image> tag
    answer: str  # the reference answer
    image: str | None  # relative to dataset.root
    split: str | None
    options: dict[str, str] | None  # letter -> text, for multiple choice
    options_listed: bool  # the question itself lists the options


def choice(value) -> str:
    """A config choice as text, whether OmegaConf hands back an Enum member or a string."""
    return value.value if isinstance(value, Enum) else str(value)


def metric_name(cfg: DictConfig) -> str:
    """dataset.metric, checked."""
    try:
        metric = choice(cfg.dataset.metric)
    except MissingMandatoryValue:
        raise UserError(f"dataset.metric is not set for dataset '{cfg.dataset.name}': choose "
                        f"one of {', '.join(RULES)}") from None
    if metric not in RULES:
        raise UserError(f"dataset.metric '{metric}' is not one of {', '.join(RULES)}")
    return metric


def eval_set_path(cfg: DictConfig) -> Path:
    """dataset.root / dataset.eval, which must exist."""
    if not cfg.dataset.eval:
        raise UserError(f"dataset.eval is not set for dataset '{cfg.dataset.name}': name the "
                        "held-out eval set (reference-set format) relative to dataset.root, e.g. "
                        "dataset.eval=eval.json")
    path = Path(cfg.dataset.root) / cfg.dataset.eval
    if not path.is_file() and not OmegaConf.select(cfg, "dataset.source"):  # prepare writes it
        raise UserError(f"dataset.eval: {path} not found; check dataset.root and dataset.eval")
    return path


def load_samples(cfg: DictConfig) -> list[EvalSample]:
    """The eval set's samples; for multiple choice each must list options and name one."""
    path, metric = eval_set_path(cfg), metric_name(cfg)
    data = load_eval_set(path)
    samples = []
    for index, record in enumerate(data["samples"]):
        question, answer = question_and_answer(record)
        question = IMAGE_TAG.sub("", question).strip()
        listed = parse_options(question)
        options = option_letters(record["options"]) if record.get("options") else listed
        if metric == "multiple_choice":
            where = f"sample {index} ('{record['id']}')"
            if not options:
                raise ContractError(path, where, "has no options: give an 'options' list or "
                                    "list them in the question ('Options: A. x B. y')")
            if chosen_option(answer, options) is None:
                raise ContractError(path, f"{where} answer", f"'{answer}' names none of the "
                                    f"options {options}")
        samples.append(EvalSample(
            id=record["id"], question=question, answer=answer,
            image=sample_image_path(data, record) if record.get("image_1") else None,
            split=record.get("split"), options=options if metric == "multiple_choice" else None,
            options_listed=listed is not None))
    return samples


def prompt_for(sample: EvalSample, template: str) -> str:
    """The text the model sees: the template around the question (and unlisted options)."""
    question = sample.question
    if sample.options and not sample.options_listed:
        question += "\n" + "\n".join(f"{letter}. {text}" for letter, text in
                                     sample.options.items())
    return template.replace("{question}", question)


def questions(samples: list[EvalSample], template: str) -> list[Question]:
    """The backend's view of the samples."""
    return [Question(s.id, prompt_for(s, template), s.image) for s in samples]
