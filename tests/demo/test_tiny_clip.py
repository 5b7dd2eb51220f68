"""The committed tiny CLIP: loads like any open_clip model and tells the demo kinds apart."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image

from mmgen.demo import build_demo
from mmgen.demo.charts import CHART_KINDS, KINDS
from mmgen.demo.tiny_clip import CHECKPOINT_PATH, KIND_KEYWORDS, MODEL_NAME, register, zero_shot

PER_KIND = 25  # pool images per kind in the fresh test set
KEYWORDS = ["bar chart", "pie chart", "line chart", "map", "shapes", "noise", "table"]


@pytest.fixture(scope="module")
def tiny_clip():
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=register())
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(MODEL_NAME)


def test_zero_shot_accuracy_on_a_fresh_demo_set(tiny_clip, tmp_path):
    # a seed no build or training run uses, so every image is new to the model
    counts = {"reference": {"bar": 1}, "eval": {}, "pool": {kind: PER_KIND for kind in KINDS}}
    build_demo(tmp_path, seed=20261126, counts=counts)
    truth = json.loads((tmp_path / "truth.json").read_text())
    pool = sorted(path for path in truth if path.startswith("pool/"))
    model, preprocess, tokenizer = tiny_clip
    pixels = torch.stack([preprocess(Image.open(tmp_path / path)) for path in pool])
    assert [KIND_KEYWORDS[kind] for kind in KINDS] == KEYWORDS
    predicted = zero_shot(model, tokenizer, pixels, KEYWORDS).tolist()
    right = Counter(truth[path]["kind"] for path, index in zip(pool, predicted)
                    if truth[path]["kind"] == KINDS[index])
    accuracy = sum(right.values()) / len(pool)
    print(f"tiny CLIP zero-shot accuracy {accuracy:.3f} on {len(pool)} fresh images; "
          f"right per kind: {dict(right)}")
    assert accuracy >= 0.9
    assert all(right[kind] >= 0.8 * PER_KIND for kind in CHART_KINDS), right


def test_checkpoint_is_small_and_loads_into_the_registered_config(tiny_clip):
    assert CHECKPOINT_PATH.stat().st_size <= 20 * 2**20
    model = tiny_clip[0]
    assert 3_000_000 < sum(p.numel() for p in model.parameters()) < 4_000_000
    state = torch.load(CHECKPOINT_PATH, map_location="cpu", weights_only=True)
    assert state.keys() == model.state_dict().keys()
    assert torch.equal(state["visual.conv1.weight"].float(), model.visual.conv1.weight)
    assert register() == str(CHECKPOINT_PATH)  # idempotent
    assert open_clip.list_models().count(MODEL_NAME) == 1


def test_training_script_runs_and_writes_a_loadable_checkpoint(tmp_path):
    from mmgen.demo.train_tiny_clip import train

    out = tmp_path / "tiny.pt"
    record = train(steps=3, per_kind=2, batch_size=8, lr=1e-3, seed=0, threads=1, out=out,
                   held_out_per_kind=1)
    assert record["steps"] == 3 and record["checkpoint_bytes"] == out.stat().st_size
    model, _, _ = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=str(out))
    assert Path(out).is_file() and model.visual.conv1.weight.dtype == torch.float32
