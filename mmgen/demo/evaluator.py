"""Evaluate the demo's tiny target model (mmgen/demo/target_model.py), offline, on the CPU."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from mmgen.errors import UserError
from mmgen.evaluation import BatchEvaluator, Question, Write, ignore_unused
from mmgen.scoring import load_image

log = logging.getLogger(__name__)
TRAINED_CHECKPOINT = "model.pt"  # what the demo trainer saves into train/


class DemoEvaluator(BatchEvaluator):
    """Greedy answers from the demo target model: the base checkpoint or train/model.pt."""

    def __init__(self, model: str | None = None, trained: str | None = None,
                 batch_size: int = 64, device: str = "auto", max_new_tokens: int = 16,
                 **other_backends_settings):
        super().__init__(trained, batch_size, device, max_new_tokens)
        ignore_unused("demo", other_backends_settings)
        self.checkpoint = str(self.trained / TRAINED_CHECKPOINT) if self.trained else model
        self.model = None

    @property
    def name(self) -> str:
        return f"demo-target-model:{self.checkpoint or 'base'}"

    def predict(self, questions: Sequence[Question], image_root: Path, write: Write) -> None:
        """Answer on one CPU thread: the model's ops are tiny, so thread hand-offs cost more
        than they save (as the demo scorer measured)."""
        from mmgen.demo.target_model import load_target_model

        if self.model is None:
            if self.trained and not Path(self.checkpoint).is_file():
                raise UserError(f"{self.checkpoint} not found: the train stage saves the trained "
                                "demo model there; run python -m mmgen.train first, or evaluate "
                                "the base model with evaluate.model=base")
            self.model = load_target_model(self.checkpoint, self.device)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            super().predict(questions, image_root, write)
        finally:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def answer_batch(self, batch: Sequence[Question], image_root: Path) -> list[str]:
        """Greedy answers of at most max_new_tokens characters; text-only questions see grey."""
        from mmgen.demo.target_model import answer

        images = [load_image(image_root, q.image) if q.image else None for q in batch]
        answers = answer(self.model, images, [q.prompt for q in batch], self.max_new_tokens)
        return [text.strip() for text in answers]
