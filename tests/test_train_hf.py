"""The hf trainer: LoRA SFT on the tiny LLaVA and Qwen2-VL built offline, answer tokens only."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.hf_train import LANGUAGE_MODEL_LINEARS, SAMPLES, TINY_LORA, write_images

from mmgen.errors import UserError
from mmgen.scoring.hf import IGNORE_INDEX, HFScorer
from mmgen.testing.random_models import save_random_llava, save_random_qwen2_vl
from mmgen.training import hf as hf_training
from mmgen.training.hf import HFTrainer, batch_plan, read_log


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models' ops are microseconds: on busy shared cores a second thread's hand-offs
    cost far more than it adds (a training step 10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {"llava": save_random_llava(root / "llava", size="tiny", seed=0),
            "qwen2_vl": save_random_qwen2_vl(root / "qwen2_vl", seed=0)}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


def make_trainer(model: Path | None, **overrides) -> HFTrainer:
    options = {"model": str(model) if model else None, "epochs": 6, "batch_size": 4, "lr": 1e-2,
               "save_every_steps": 100, "log_every_steps": 5, "seed": 0, "device": "cpu",
               "progress": False, "lora": TINY_LORA}
    return HFTrainer(**{**options, **overrides})


def mean_loss(model: Path, image_root: Path, adapter: Path | None = None) -> float:
    scorer = HFScorer(model=str(model), adapter=str(adapter) if adapter else None, device="cpu")
    return float(np.mean(scorer.score(SAMPLES, image_root)))


@pytest.fixture(scope="module")
def trained(models, image_root, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Each tiny model trained for 12 steps on SAMPLES: (train folder, stats)."""
    result = {}
    for name, model in models.items():
        train_dir = tmp_path_factory.mktemp(f"train_{name}") / "train"
        stats = make_trainer(model).train(SAMPLES, image_root, train_dir, train_dir / "log.jsonl")
        result[name] = (train_dir, stats)
    return result


@pytest.mark.parametrize("name", ["llava", "qwen2_vl"])
def test_a_few_steps_lower_the_answer_loss_and_the_adapter_reloads(name, models, trained,
                                                                   image_root):
    train_dir, stats = trained[name]
    assert stats["samples"] == 8 and stats["steps"] == 12 and stats["resumed_from_step"] == 0
    records = read_log(train_dir / "log.jsonl")
    assert [r["step"] for r in records] == [5, 10, 12]  # every 5 steps, and the last
    assert records[-1]["loss"] < records[0]["loss"] and stats["final_loss"] == records[-1]["loss"]
    assert {"epoch", "lr", "elapsed_s"} <= set(records[0])
    # train/ holds the adapter and the curve; the checkpoints are gone once the adapter is saved
    assert sorted(p.name for p in train_dir.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "log.jsonl"]
    # the filter's scorer, reloading the adapter with peft, sees the answers got easier
    before, after = mean_loss(models[name], image_root), mean_loss(models[name], image_root,
                                                                   train_dir)
    assert after < before - 0.1, (before, after)


def test_only_the_language_model_gets_adapters(trained):
    from safetensors.torch import load_file

    train_dir, stats = trained["llava"]
    weights = load_file(train_dir / "adapter_model.safetensors")
    assert weights and all("language_model" in key and "lora_" in key for key in weights)
    assert sum(w.numel() for w in weights.values()) == stats["trainable_params"]
    # LoRA starts with B = 0: a trained adapter has moved it
    assert all(w.abs().sum() > 0 for key, w in weights.items() if "lora_B" in key)
    config = json.loads((train_dir / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16


@pytest.mark.parametrize("name", ["llava", "qwen2_vl"])
def test_evaluate_hf_backend_answers_with_the_trained_adapter(name, models, trained, image_root):
    from mmgen.evaluation import Question
    from mmgen.evaluation.hf import HFEvaluator

    questions = [Question(s["id"], s["conversations"][0]["value"].split("\n", 1)[1],
                          s.get("image_1")) for s in SAMPLES]

    def answers(trained_dir: Path | None) -> dict[str, str]:
        made = {}
        HFEvaluator(model=str(models[name]), trained=str(trained_dir) if trained_dir else None,
                    device="cpu", batch_size=4, max_new_tokens=3).predict(
            questions, image_root, lambda question, answer: made.update({question.id: answer}))
        return made

    base, tuned = answers(None), answers(trained[name][0])
    assert sorted(tuned) == sorted(s["id"] for s in SAMPLES)  # every question answered
    assert tuned != base  # the adapter is applied: greedy answers change


def test_training_loss_is_the_filters_masked_answer_loss(models, image_root, tmp_path):
    """Step 1's loss is the scorer's answer-token loss over the batch (one batch, mixed)."""
    model = models["llava"]
    trainer = make_trainer(model, batch_size=8, max_steps=1, log_every_steps=1)
    train_dir = tmp_path / "train"
    trainer.train(SAMPLES, image_root, train_dir, train_dir / "log.jsonl")
    first_loss = read_log(train_dir / "log.jsonl")[0]["loss"]
    # the collator encodes as the scorer does: its labels are the answer tokens (+ end token)
    batch = hf_training.AnswerOnlyCollator(trainer.encoder(), image_root)(SAMPLES)
    tokenizer = trainer.encoder().tokenizer
    answers = [tokenizer.decode(row[row != IGNORE_INDEX]) for row in batch["labels"]]
    expected_answers = [s["conversations"][1]["value"] for s in SAMPLES]
    assert sorted(a.replace("</s>", "").strip() for a in answers) == sorted(expected_answers)
    counts = {a.replace("</s>", "").strip(): int((row != IGNORE_INDEX).sum())
              for a, row in zip(answers, batch["labels"])}
    per_sample = HFScorer(model=str(model), device="cpu").score(SAMPLES, image_root)
    weights = [counts[s["conversations"][1]["value"]] for s in SAMPLES]
    expected = float(np.average(per_sample, weights=weights))  # token mean over the batch
    assert first_loss == pytest.approx(expected, abs=1e-4)


def test_an_interrupted_run_resumes_to_the_same_adapter(models, image_root, tmp_path,
                                                        monkeypatch):
    from safetensors.torch import load_file

    model = models["llava"]
    options = {"epochs": 3, "save_every_steps": 3, "log_every_steps": 1, "lora": {
        "r": 4, "alpha": 8, "dropout": 0.1, "target_modules": LANGUAGE_MODEL_LINEARS}}
    straight = tmp_path / "straight"
    make_trainer(model, **options).train(SAMPLES, image_root, straight, straight / "log.jsonl")

    resumed = tmp_path / "resumed"
    original_on_log = hf_training.LossLog.on_log

    def crash_after_step_4(self, args, state, control, logs=None, **kwargs):
        original_on_log(self, args, state, control, logs=logs, **kwargs)
        if state.global_step == 4:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(hf_training.LossLog, "on_log", crash_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(model, **options).train(SAMPLES, image_root, resumed, resumed / "log.jsonl")
    assert (resumed / "checkpoints" / "checkpoint-3").is_dir()
    assert [r["step"] for r in read_log(resumed / "log.jsonl")] == [1, 2, 3, 4]
    monkeypatch.undo()

    # another learning rate is another run: its checkpoint is not resumed, the curve restarts
    changed = tmp_path / "changed"
    shutil.copytree(resumed, changed)
    stats = make_trainer(model, **{**options, "lr": 5e-3}).train(SAMPLES, image_root, changed,
                                                                 changed / "log.jsonl")
    assert stats["resumed_from_step"] == 0 and stats["steps"] == 6
    assert [r["step"] for r in read_log(changed / "log.jsonl")] == [1, 2, 3, 4, 5, 6]

    stats = make_trainer(model, **options).train(SAMPLES, image_root, resumed,
                                                 resumed / "log.jsonl")
    assert stats["resumed_from_step"] == 3 and stats["steps"] == 6
    # step 4's record, written after the checkpoint, is replaced, not repeated
    records = read_log(resumed / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in records] == pytest.approx(
        [r["loss"] for r in read_log(straight / "log.jsonl")], abs=1e-5)
    a, b = load_file(straight / "adapter_model.safetensors"), load_file(
        resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_config_builds_the_trainer_with_the_papers_batch(make_config, models, monkeypatch):
    from mmgen.train import build_trainer

    cfg = make_config("train=llava_1_5_7b", f"train.trainer.model={models['llava']}")
    trainer = build_trainer(cfg)
    assert isinstance(trainer, HFTrainer) and trainer.lora["r"] == 128
    assert trainer.batch_size == 128 and trainer.micro_batch_size == 16
    args = trainer.arguments(Path("unused"), num_samples=1000)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (16, 8)
    assert args.max_steps == 8  # one epoch of 1,000 samples at 128 per step
    monkeypatch.setenv("WORLD_SIZE", "4")  # as torchrun sets it: same batch, less accumulation
    assert batch_plan(128, 16, 4) == (16, 2)


def test_bad_settings_name_the_key(models, image_root, tmp_path):
    with pytest.raises(UserError, match="train.trainer.model is empty"):
        make_trainer(None)
    with pytest.raises(UserError, match="train.batch_size 12 is not a multiple of "
                                        r"train.trainer.micro_batch_size 8 x 1"):
        batch_plan(12, 8, 1)
    with pytest.raises(UserError, match="train.trainer.dtype 'float8'"):
        make_trainer(models["llava"], dtype="float8")
    trainer = make_trainer(models["llava"], lora={"r": 4, "alpha": 8, "dropout": 0.0,
                                                  "target_modules": r".*no_such_layer"})
    with pytest.raises(UserError, match=r"train.trainer.lora.target_modules '\.\*no_such_layer'"):
        trainer.train(SAMPLES, image_root, tmp_path / "train", tmp_path / "train" / "log.jsonl")


@pytest.mark.slow
def test_two_processes_under_torchrun_train_one_adapter(models, image_root, tmp_path):
    """Two CPU processes (gloo) share the batch; one log and one adapter come out."""
    script = Path(__file__).parent / "helpers" / "train_hf_ddp.py"
    train_dir = tmp_path / "train"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    "--master_port=29533", str(script), str(models["llava"]), str(image_root),
                    str(train_dir)], check=True, env=env, timeout=600)
    stats = json.loads((train_dir / "stats.json").read_text())
    assert stats["devices"] == 2 and stats["gradient_accumulation_steps"] == 1
    assert stats["micro_batch_size"] == 2 and stats["steps"] == 12
    records = read_log(train_dir / "log.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]  # written once, by rank 0
    assert records[-1]["loss"] < records[0]["loss"]
    assert mean_loss(models["llava"], image_root, train_dir) < mean_loss(models["llava"],
                                                                         image_root) - 0.1
