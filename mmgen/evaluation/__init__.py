"""Evaluation backends: the target model answers eval questions greedily, one answer at a time
handed to a writer as soon as it exists (so a killed run keeps what it made).

`evaluate.backend._target_` names the backend; `build_evaluator` builds it with the stage-wide
knobs (batch size, device, answer length) and the trained model's folder, or none for the base:
- `mmgen.demo.evaluator.DemoEvaluator`: the demo's tiny target model, offline.
- `mmgen.evaluation.hf.HFEvaluator`: any Hugging Face image-text-to-text model (+ LoRA adapter).
- `mmgen.evaluation.compatible.CompatibleEvaluator`: a model behind an OpenAI-compatible server.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from mmgen.scoring import batches, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    id: str  # the eval sample's id
    prompt: str  # the text the model sees (evaluate.prompt applied)
    image: str | None  # image path relative to the image root; None for a text-only question


Write = Callable[[Question, str], None]


class Evaluator(ABC):
    """Answers questions about images with one target model, greedy."""

    def __init__(self, trained: str | None = None, batch_size: int = 16, device: str = "auto",
                 max_new_tokens: int = 16):
        self.trained = Path(trained) if trained else None  # the train stage's folder, or None
        self.batch_size = max(1, int(batch_size))
        self.device = resolve_device(device)
        self.max_new_tokens = max_new_tokens

    @property
    def name(self) -> str:
        """The model that answers, for logs and metrics.json."""
        return type(self).__name__

    @abstractmethod
    def predict(self, questions: Sequence[Question], image_root: Path, write: Write) -> None:
        """Answer every question; call write(question, answer) as each answer is made."""


class BatchEvaluator(Evaluator):
    """A backend that answers a batch at a time on a local device."""

    def predict(self, questions: Sequence[Question], image_root: Path, write: Write) -> None:
        """Questions with images, then text-only ones, in batches of similar prompt length."""
        ordered = sorted(questions, key=lambda q: (q.image is None, len(q.prompt)))
        for has_image in (True, False):
            group = [q for q in ordered if (q.image is not None) == has_image]
            for batch in batches(group, self.batch_size):
                for question, answer in zip(batch, self.answer_batch(batch, image_root)):
                    write(question, answer)

    @abstractmethod
    def answer_batch(self, batch: Sequence[Question], image_root: Path) -> list[str]:
        """One answer per question, in order; all of the batch have images, or none."""


def ignore_unused(backend: str, options: dict) -> None:
    """Warn about settings this backend does not read that differ from their defaults."""
    from mmgen.schema.evaluate import EvaluatorConfig

    defaults = {f.name: f.default for f in fields(EvaluatorConfig) if f.default is not MISSING}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"{backend} got unknown settings: {', '.join(unknown)}")
    changed = sorted(key for key, value in options.items() if value != defaults[key])
    if changed:
        log.warning("the %s backend ignores %s", backend,
                    ", ".join(f"evaluate.backend.{key}" for key in changed))


def build_evaluator(cfg, trained: Path | None) -> Evaluator:
    """Instantiate `evaluate.backend` with the stage-wide knobs; `trained` None means the base."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from mmgen.errors import UserError

    evaluate = cfg.evaluate
    try:
        return instantiate(evaluate.backend, trained=str(trained) if trained else None,
                           batch_size=evaluate.batch_size, device=evaluate.device,
                           max_new_tokens=evaluate.max_new_tokens, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):  # a bad setting: say it plainly
            raise err.__cause__ from None
        raise
