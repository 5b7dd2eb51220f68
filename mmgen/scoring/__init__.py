"""Scoring generated samples with the target model: the interface every scorer follows.

A scorer turns samples into losses: the mean token cross-entropy of the answer given the image
and the question, with the prompt tokens masked out. Higher loss = the target model finds the
sample harder, which is what the MM-Gen filter keeps.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image

from mmgen.contracts import question_and_answer
from mmgen.imageio import open_image
from mmgen.modes import strip_image_tags

IMAGE_TAG = re.compile(r"<image>\s*")


class Scorer(ABC):
    """Scores samples by the target model's mean answer-token loss (nats per token)."""

    def __init__(self, device: str = "auto", batch_size: int = 16):
        self.device = resolve_device(device)
        self.batch_size = max(1, int(batch_size))

    @abstractmethod
    def score(self, samples: Sequence[dict], image_root: str | Path) -> list[float]:
        """Loss per sample, in input order; images are relative to `image_root`."""

    @property
    def name(self) -> str:
        """What scored the samples, for logs and provenance."""
        return type(self).__name__


def resolve_device(device: str) -> str:
    """'auto' becomes cuda when a GPU is present, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def prompt_and_answer(sample: dict) -> tuple[str, str]:
    """The sample's question without its `<image>` tag, and its answer."""
    question, answer = question_and_answer(sample)
    return strip_image_tags(question), answer.strip()


def load_image(image_root: str | Path, relative_path: str,
               max_side: int | None = None) -> Image.Image:
    """Open an image as RGB (mmgen.imageio), its longer side shrunk to at most `max_side`."""
    return open_image(Path(image_root) / relative_path, max_side=max_side,
                      name_for_errors=f"image '{relative_path}' under '{image_root}'")


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of `items`, `size` at a time."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


SCORER_CHECKS = {"mmgen.scoring.hf.HFScorer": "validate_hf_scorer",
                 "mmgen.demo.scorer.DemoTargetScorer": "validate_demo_scorer"}


def validate(cfg) -> None:
    """The filter's scorer checkpoint exists and suits its scorer: checked before any stage
    runs, in seconds (a hub id costs at most one request), with the fix in the message."""
    from mmgen.scoring import checkpoints

    check = SCORER_CHECKS.get(str(cfg.filter.scorer.get("_target_", "")))
    if check:
        getattr(checkpoints, check)(cfg.filter.scorer)


def build_scorer(filter_cfg) -> Scorer:
    """Instantiate the scorer named by `filter.scorer._target_` with the filter's runtime knobs."""
    from hydra.utils import instantiate

    return instantiate(filter_cfg.scorer, device=filter_cfg.device,
                       batch_size=filter_cfg.batch_size, _convert_="all")
