"""The demo's base target model: committed, small, weak on charts; greedy answers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.demo.build import DEFAULT_COUNTS, build_demo
from mmgen.demo.target_model import (
    CHECKPOINT,
    answer,
    encode_batch,
    images_tensor,
    load_target_model,
)
from mmgen.demo.train_target_model import evaluate, make_examples
from mmgen.scoring import prompt_and_answer
from mmgen.demo.scorer import DemoTargetScorer


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


def test_base_model_knows_its_own_material_but_not_the_chart_task(demo_eval):
    """Like LLaVA before fine-tuning: right answers on what it was taught stand out; on chart
    questions it has never been asked, right and wrong answers cost about the same."""
    root, samples = demo_eval
    assert len(samples) >= 300
    model = load_target_model()
    images, examples = make_examples(60, 3, seed=424242)  # never a training or build seed
    own = evaluate(model, images, examples)
    assert own["correct"] < own["shuffled"] - 1.0  # nats per character
    answers = [s["conversations"][1]["value"] for s in samples]
    shuffled_answers = [answers[(i + 7) % len(answers)] for i in range(len(answers))]
    scorer = DemoTargetScorer(device="cpu", batch_size=64)
    correct = np.array(scorer.score(samples, root))
    shuffled = np.array(scorer.score([with_answer(s, a) for s, a in zip(samples, shuffled_answers)],
                                     root))
    assert np.isfinite(correct).all() and np.isfinite(shuffled).all()
    assert correct.mean() > 3 * own["correct"]  # the chart task is new to it
    assert (correct < shuffled).mean() < 0.7  # and it barely tells right from wrong there


def test_greedy_answers_are_what_the_model_scores_best(demo_eval):
    root, samples = demo_eval
    model = load_target_model()
    batch = samples[:6]
    images = [Image.open(root / s["image_1"]) for s in batch] + [None]
    questions = [prompt_and_answer(s)[0] for s in batch] + ["Does this image contain a chart?"]
    answers = answer(model, images, questions, max_chars=40)
    assert len(answers) == 7 and all(isinstance(a, str) and a for a in answers)
    # teacher-forcing each greedy answer reproduces it: every character is the argmax
    encoded = encode_batch(questions, answers)
    with torch.no_grad():
        logits = model(images_tensor(images), encoded["question"], encoded["decoder_input"])
    target = encoded["target"].clone()
    for row, text in enumerate(answers):
        if len(text) == 40:  # cut at max_chars: the model never chose to end there
            target[row, 40] = 0
    assert torch.equal(logits.argmax(-1).masked_fill(target == 0, 0), target)
    # batched answers equal one-by-one answers, and max_chars cuts them
    assert [answer(model, [i], [q], 40)[0] for i, q in zip(images, questions)] == answers
    assert all(len(a) <= 3 for a in answer(model, images, questions, max_chars=3))
    with pytest.raises(ValueError, match="7 images but 1 questions"):
        answer(model, images, questions[:1])


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
