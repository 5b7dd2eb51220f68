"""Score samples with the demo's tiny target model (mmgen/demo/target_model.py), offline."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from mmgen.scoring import Scorer, batches, load_image, prompt_and_answer

log = logging.getLogger(__name__)


class DemoTargetScorer(Scorer):
    """Mean answer-character loss from the committed demo target model (or a given checkpoint)."""

    def __init__(self, model: str | None = None, device: str = "auto", batch_size: int = 64,
                 **hf_only_options):
        super().__init__(device, batch_size)
        unused = [key for key, value in hf_only_options.items() if value not in (None, "auto")]
        if unused:
            log.warning("the demo target model ignores %s",
                        ", ".join(f"filter.scorer.{key}" for key in unused))
        self.checkpoint = model
        self.model = None

    @property
    def name(self) -> str:
        return f"demo-target-model:{self.checkpoint}" if self.checkpoint else "demo-target-model"

    def score(self, samples: Sequence[dict], image_root: str | Path) -> list[float]:
        """Mean loss over each answer's characters plus its end mark, batched."""
        from mmgen.demo.target_model import load_target_model

        if self.model is None:
            self.model = load_target_model(self.checkpoint, self.device)
        # the model's ops are tiny: on CPU, thread hand-offs cost more than they save (measured
        # on 2 busy cores: 46 samples/s with 2 threads, 382 with 1), so score on one thread
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [loss for batch in batches(samples, self.batch_size)
                    for loss in self.score_batch(batch, image_root)]
        finally:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def score_batch(self, batch: Sequence[dict], image_root: str | Path) -> list[float]:
        """Losses of one batch; text-only samples (tqa) see a grey image."""
        from mmgen.demo.target_model import (
            IMAGE_SIDE,
            encode_batch,
            image_tensor,
            sequence_losses,
        )

        blank = torch.zeros(3, IMAGE_SIDE, IMAGE_SIDE)
        questions, answers = zip(*(prompt_and_answer(sample) for sample in batch))
        images = torch.stack([image_tensor(load_image(image_root, s["image_1"]))
                              if s.get("image_1") else blank for s in batch])
        encoded = {key: value.to(self.device)
                   for key, value in encode_batch(list(questions), list(answers)).items()}
        logits = self.model(images.to(self.device), encoded["question"], encoded["decoder_input"])
        return sequence_losses(logits, encoded["target"]).tolist()
