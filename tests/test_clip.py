"""mmgen.clip: one loading path for every open_clip model, lazy weights, robust image reading."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from mmgen.clip import ClipEncoder, expected_preprocess, resolve_device

TEST_ARCH = "mmgen-test-clip"
TEST_MODEL = {"embed_dim": 32,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                             "patch_size": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                           "layers": 1}}


def make_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Register a tiny random-init open_clip architecture and save its weights to a file."""
    import json

    import open_clip

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{TEST_ARCH}.json"
    config.write_text(json.dumps(TEST_MODEL))
    if TEST_ARCH not in open_clip.list_models():
        open_clip.add_model_config(config)
    torch.manual_seed(seed)
    checkpoint = directory / f"random_{seed}.pt"
    torch.save(open_clip.create_model(TEST_ARCH, pretrained=None).state_dict(), checkpoint)
    return checkpoint


def clip_config(checkpoint: Path | None, **changes):
    values = {"arch": TEST_ARCH, "setup": None, "pretrained": str(checkpoint) if checkpoint else None,
              "device": "cpu", "fp16_on_cuda": True, "batch_size": 4, "num_workers": 0,
              "templates": ["a photo of a {}.", "{}"]}
    return OmegaConf.create({**values, **changes})


def draw(path: Path, color: tuple[int, int, int], size=(48, 40)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("test_clip"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 240), (10, 10, 10)]
    return [draw(folder / f"img_{i}.png", color) for i, color in enumerate(colors)]


def test_importing_the_stages_loads_no_model():
    code = ("import sys, mmgen.clip, mmgen.pool, mmgen.partition, mmgen.retrieve; "
            "print('open_clip' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_cache_key_needs_no_weights_and_names_model_and_weights(checkpoint):
    encoder = ClipEncoder(clip_config(checkpoint))
    assert encoder.key.startswith(TEST_ARCH)
    assert encoder.identity["weights"].startswith("file-sha256:")
    assert encoder.identity["preprocess"]["size"] == [32, 32]
    assert encoder._model is None  # computing the key loaded nothing
    other = ClipEncoder(clip_config(make_checkpoint(checkpoint.parent, seed=1)))
    assert other.key != encoder.key


def test_pretrained_tags_resolve_preprocessing_without_download():
    vit_b = expected_preprocess("ViT-B-32", "laion2b_s34b_b79k")
    vit_l = expected_preprocess("ViT-L-14", "openai")
    assert vit_b["size"] == vit_l["size"] == [224, 224]
    assert vit_b["interpolation"] == "bicubic"
    with pytest.raises(ValueError, match="not an open_clip model config"):
        expected_preprocess("ViT-Nope", None)


def test_missing_weights_are_a_clear_error():
    with pytest.raises(ValueError, match="clip.pretrained is null"):
        _ = ClipEncoder(OmegaConf.merge(clip_config(None), {"arch": "ViT-B-32"})).key


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_says_what_to_do():
    assert resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="clip.device=auto or cpu"):
        resolve_device("cuda")


def test_image_embeddings_are_unit_norm_and_reproducible(checkpoint, images):
    first, failures = ClipEncoder(clip_config(checkpoint)).encode_images(images)
    second, _ = ClipEncoder(clip_config(checkpoint, batch_size=2)).encode_images(images)
    assert failures == {}
    assert first.shape == (len(images), 32)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, second, atol=1e-5)
    assert not np.allclose(first[0], first[1])  # different images, different vectors


def test_keyword_queries_average_the_template_ensemble(checkpoint):
    encoder = ClipEncoder(clip_config(checkpoint))
    queries = encoder.keyword_queries(["bar chart", "pie chart"], ["a photo of a {}.", "{}"])
    raw = encoder.encode_texts(["bar chart", "pie chart"])
    assert queries.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(queries, raw)


def test_unreadable_files_come_back_with_reasons(checkpoint, images, tmp_path):
    empty = tmp_path / "empty.png"
    empty.touch()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(images[0].read_bytes()[:60])
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    photo = tmp_path / "large.jpg"
    Image.effect_noise((900, 700), 60).convert("RGB").save(photo, quality=90)
    paths = [images[0], empty, images[1], truncated, text, *images[2:], photo]
    encoder = ClipEncoder(clip_config(checkpoint, batch_size=2, num_workers=2))
    embeddings, failures = encoder.encode_images(paths)
    assert set(failures) == {1, 3, 4}
    assert "empty" in failures[1]
    assert "truncated" in failures[3]
    assert "not an image" in failures[4]
    assert np.allclose(np.linalg.norm(embeddings[[0, 2, 5, 6, 7, 8]], axis=1), 1.0, atol=1e-5)


def test_16bit_grayscale_is_embedded_as_its_picture_not_blank_white(checkpoint, tmp_path):
    pattern = np.add.outer(np.linspace(0, 1, 40), np.linspace(0, 1, 48)) / 2  # a diagonal ramp
    Image.fromarray((pattern * 255).astype(np.uint8)).save(tmp_path / "gray8.png")
    Image.fromarray((pattern * 65535).astype(np.uint16)).save(tmp_path / "gray16.png")
    white = draw(tmp_path / "white.png", (255, 255, 255))
    encoder = ClipEncoder(clip_config(checkpoint))
    embeddings, failures = encoder.encode_images([tmp_path / "gray8.png", tmp_path / "gray16.png",
                                                  white])
    assert not failures
    np.testing.assert_allclose(embeddings[1], embeddings[0], atol=2e-3)
    assert not np.allclose(embeddings[1], embeddings[2], atol=2e-2)


def test_every_clip_option_composes(make_config):
    for option, arch in [("demo_tiny", "mmgen-tiny-clip"), ("vit_b32_laion2b", "ViT-B-32"),
                         ("vit_l14_openai", "ViT-L-14")]:
        assert make_config(f"clip={option}").clip.arch == arch
    local = make_config("clip=local", "clip.arch=ViT-B-32", "clip.pretrained=/models/b32.pt")
    assert local.clip.pretrained == "/models/b32.pt"
    assert len(make_config("clip=vit_l14_openai").clip.templates) > 1
