"""The demo's target model: committed, small, and its losses mean something."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmgen.demo.build import DEFAULT_COUNTS, build_demo
from mmgen.demo.target_model import CHECKPOINT
from mmgen.scoring.demo import DemoTargetScorer


@pytest.fixture(scope="module")
def demo_eval(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The default demo's eval set (images depend only on seed and name, so the pool is skipped)."""
    root = tmp_path_factory.mktemp("demo")
    build_demo(root, seed=0, counts={"reference": {"bar": 1}, "eval": DEFAULT_COUNTS["eval"],
                                     "pool": {}})
    import json

    return root, json.loads((root / "eval.json").read_text())["samples"]


def with_answer(sample: dict, answer: str) -> dict:
    question = sample["conversations"][0]
    return {**sample, "conversations": [question, {"from": "gpt", "value": answer}]}


def test_checkpoint_is_committed_and_small():
    assert CHECKPOINT.is_file() and CHECKPOINT.stat().st_size <= 20 * 1024 * 1024


def test_correct_answers_score_lower_than_shuffled_ones(demo_eval):
    root, samples = demo_eval
    assert len(samples) == 60
    answers = [s["conversations"][1]["value"] for s in samples]
    shuffled_answers = [answers[(i + 7) % len(answers)] for i in range(len(answers))]
    scorer = DemoTargetScorer(device="cpu", batch_size=32)
    correct = np.array(scorer.score(samples, root))
    shuffled = np.array(scorer.score([with_answer(s, a) for s, a in zip(samples, shuffled_answers)],
                                     root))
    assert np.isfinite(correct).all() and np.isfinite(shuffled).all()
    assert correct.mean() < shuffled.mean() - 1.0  # nats per character
    assert (correct < shuffled).mean() >= 0.8  # and per sample, not only on average


def test_scores_are_deterministic_and_batch_independent(demo_eval):
    root, samples = demo_eval
    batched = DemoTargetScorer(device="cpu", batch_size=16).score(samples[:10], root)
    one_by_one = DemoTargetScorer(device="cpu", batch_size=1).score(samples[:10], root)
    assert batched == pytest.approx(one_by_one, abs=1e-4)


def test_text_only_samples_are_scored_too(demo_eval):
    root, samples = demo_eval
    text_only = {k: v for k, v in samples[0].items() if k != "image_1"}
    loss = DemoTargetScorer(device="cpu").score([text_only], root)[0]
    assert np.isfinite(loss) and loss > 0


def test_image_tensor_reads_a_16bit_image_as_its_picture():
    from PIL import Image

    from mmgen.demo.target_model import IMAGE_SIDE, image_tensor

    ramp = np.tile(np.linspace(0, 1, 64), (64, 1))
    wide = image_tensor(Image.fromarray((ramp * 65535).astype(np.uint16)))
    narrow = image_tensor(Image.fromarray((ramp * 255).astype(np.uint8)))
    assert wide.shape == narrow.shape == (3, IMAGE_SIDE, IMAGE_SIDE)
    assert float((wide - narrow).abs().max()) < 0.02 and float(wide.min()) < -0.9
