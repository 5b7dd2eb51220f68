"""The demo trainer: lowers the loss, saves a model that reloads, same seed same model, resumes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.train_data import build_train_demo

import mmgen.demo.trainer as demo_training
from mmgen.demo.target_model import encode_batch, load_target_model, sequence_losses
from mmgen.demo.trainer import DemoTrainer, load_samples

KNOBS = {"epochs": 6, "batch_size": 4, "lr": 3e-3, "save_every_steps": 4, "log_every_steps": 1,
         "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def train_demo(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = build_train_demo(tmp_path_factory.mktemp("train_demo"))
    return root, json.loads((root / "train.json").read_text())["samples"]


def train(root: Path, samples: list[dict], out: Path, **overrides) -> dict:
    trainer = DemoTrainer(**{**KNOBS, **overrides})
    return trainer.train(samples, root, out, out / "log.jsonl")


def mean_loss(model, root: Path, samples: list[dict]) -> float:
    images, questions, answers = load_samples(samples, root)
    encoded = encode_batch(questions, answers)
    with torch.no_grad():
        logits = model(images, encoded["question"], encoded["decoder_input"])
    return sequence_losses(logits, encoded["target"]).mean().item()


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_a_few_steps_lower_the_loss_and_the_model_reloads(train_demo, tmp_path):
    root, samples = train_demo
    stats = train(root, samples[:12], tmp_path)
    curve = log_records(tmp_path)
    assert [r["step"] for r in curve] == list(range(1, 19))  # 6 epochs of 3 batches
    assert {"step", "epoch", "loss", "lr"} <= set(curve[0]) and curve[-1]["epoch"] == 6
    assert curve[-1]["loss"] < 0.8 * curve[0]["loss"]
    assert stats["samples"] == 12 and stats["steps"] == 18 and stats["samples_per_s"] > 0
    assert not (tmp_path / "checkpoint.pt").exists()  # model.pt is the result
    trained, base = load_target_model(tmp_path / "model.pt"), load_target_model()
    assert mean_loss(trained, root, samples[:12]) < mean_loss(base, root, samples[:12]) - 0.3


def test_same_seed_same_model_other_seed_other_model(train_demo, tmp_path):
    root, samples = train_demo
    weights = []
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        train(root, samples[:8], tmp_path / name, seed=seed, epochs=2)
        weights.append(torch.load(tmp_path / name / "model.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_model(train_demo, tmp_path,
                                                                     monkeypatch):
    root, samples = train_demo
    train(root, samples[:12], tmp_path / "whole")
    real_append = demo_training.append_log

    def die_at_step_7(path, record):
        if record["step"] == 7:
            raise KeyboardInterrupt
        real_append(path, record)

    monkeypatch.setattr(demo_training, "append_log", die_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        train(root, samples[:12], tmp_path / "killed")
    assert (tmp_path / "killed" / "checkpoint.pt").is_file()
    assert not (tmp_path / "killed" / "model.pt").exists()
    monkeypatch.setattr(demo_training, "append_log", real_append)
    stats = train(root, samples[:12], tmp_path / "killed")
    assert stats["resumed_from_step"] == 4  # the last checkpoint before the kill
    assert log_records(tmp_path / "killed") == log_records(tmp_path / "whole")
    whole, resumed = (torch.load(tmp_path / name / "model.pt", weights_only=True)["state_dict"]
                      for name in ("whole", "killed"))
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole)


def test_a_checkpoint_from_other_settings_is_not_resumed(train_demo, tmp_path, monkeypatch,
                                                         caplog):
    root, samples = train_demo
    real_append = demo_training.append_log

    def die_at_step_3(path, record):
        if record["step"] == 3:
            raise KeyboardInterrupt
        real_append(path, record)

    monkeypatch.setattr(demo_training, "append_log", die_at_step_3)
    with pytest.raises(KeyboardInterrupt):  # leaves a checkpoint at step 2, made with lr=1e-4
        train(root, samples[:8], tmp_path, max_steps=4, save_every_steps=2, lr=1e-4)
    assert (tmp_path / "checkpoint.pt").is_file()
    monkeypatch.setattr(demo_training, "append_log", real_append)
    stats = train(root, samples[:8], tmp_path, max_steps=4, save_every_steps=2)
    assert stats["resumed_from_step"] == 0
    assert "made with other samples or settings" in caplog.text
    assert [r["step"] for r in log_records(tmp_path)] == [1, 2, 3, 4]


def test_bad_knobs_name_the_key():
    with pytest.raises(ValueError, match="train.batch_size"):
        DemoTrainer(**{**KNOBS, "batch_size": 0})
    with pytest.raises(ValueError, match="train.epochs"):
        DemoTrainer(**{**KNOBS, "epochs": 0})


def test_hf_only_settings_are_reported_not_silently_dropped(caplog):
    DemoTrainer(**KNOBS, micro_batch_size=2, dtype=None)
    assert "train.trainer.micro_batch_size" in caplog.text and "dtype" not in caplog.text


def test_text_only_samples_train_on_a_grey_image(train_demo, tmp_path):
    root, samples = train_demo
    text_only = [{k: v for k, v in s.items() if k != "image_1"} for s in samples[:4]]
    stats = train(root, text_only + samples[4:8], tmp_path, epochs=1)
    assert stats["samples"] == 8 and (tmp_path / "model.pt").is_file()
