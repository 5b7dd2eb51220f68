"""The export stage, loaded the way each trainer loads it: LLaVA's own data loader, LLaMA-Factory's
path rule and image-tag check, and a chat built from the HF columns run through a LLaVA model."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from curation_data import write_upstream
from PIL import Image

from mmgen import export
from mmgen.contracts import load_dataset, read_json, write_dataset

PROVENANCE = {"keyword", "candidate_score", "icl_indices", "prompt_id", "model", "target_loss"}


@pytest.fixture
def exported(make_config, curation_demo_root, tmp_path):
    """Export filtered samples with the given overrides; returns (out_dir, samples, stats)."""
    def _run(*overrides: str, edit=None) -> tuple[Path, list[dict], dict]:
        out = tmp_path / "out"
        if not (out / "filtered.json").exists():
            write_upstream(out, curation_demo_root)
            dataset = load_dataset(out / "data.json")
            kept = [dict(s, target_loss=round(1 + i / 100, 2))
                    for i, s in enumerate(dataset["samples"])]
            write_dataset(out / "filtered.json", {**dataset, "samples": (edit or list)(kept)})
        cfg = make_config(f"dataset.root={curation_demo_root}", *overrides, out_dir=out)
        stats = export.compute(cfg, out)
        return out, load_dataset(out / "filtered.json")["samples"], stats
    return _run


def llava_load(record: dict, image_folder: str) -> tuple[Image.Image | None, int]:
    """What LLaVA's LazySupervisedDataset does with one record (llava/train/train.py): open
    `image_folder/record["image"]` as RGB, then preprocess_multimodal moves every turn's <image>
    to that turn's front; each tag becomes one image-token slot. Returns (image, slots)."""
    image = None
    if "image" in record:
        image = Image.open(os.path.join(image_folder, record["image"])).convert("RGB")
    slots = sum(turn["value"].count("<image>") for turn in record["conversations"])
    return image, slots


def test_llava_export_loads_through_llavas_loader_one_tag_per_image(exported):
    out, kept, stats = exported()
    records = read_json(out / "export" / "llava.json")
    manifest = read_json(out / "export" / "manifest.json")
    assert len(records) == len(kept) == manifest["samples"] == stats["samples"] > 0
    assert [r["id"] for r in records] == [s["id"] for s in kept]
    for record, sample in zip(records, kept):
        image, slots = llava_load(record, manifest["image_folder"])  # --image_folder
        assert image is not None and image.size[0] > 0 and slots == 1
        assert not Path(record["image"]).is_absolute()
        first = record["conversations"][0]
        assert first["from"] == "human" and first["value"].startswith("<image>\n")
        assert PROVENANCE <= record.keys()
        assert (record["target_loss"], record["keyword"]) == (sample["target_loss"],
                                                              sample["keyword"])
    assert stats["image_tags_fixed"] == 0  # generate already placed every tag


def llama_factory_images(dataset_dir: Path, name: str) -> list[tuple[list[str], list[dict]]]:
    """(resolved image paths, messages) per record, as LLaMA-Factory reads a local dataset.

    Its rule (data/converter.py, DatasetConverter._find_medias): media_dir defaults to
    dataset_dir, the folder of dataset_info.json; each path is os.path.join(media_dir, path),
    kept if that is a file, else the original path is used as is (relative to the process's
    working directory) after a "does not exist in `media_dir`" warning. An absolute path
    survives the join. Then mm_plugin requires as many <image> tags as images."""
    info = read_json(dataset_dir / "dataset_info.json")[name]
    columns, tags = info["columns"], info["tags"]
    loaded = []
    for record in read_json(dataset_dir / info["file_name"]):
        paths = []
        for path in record[columns["images"]]:
            joined = os.path.join(dataset_dir, path)  # media_dir == dataset_dir
            assert os.path.isfile(joined), f"{path} does not exist in media_dir {dataset_dir}"
            paths.append(joined)
        messages = record[columns["messages"]]
        roles = [m[tags["role_tag"]] for m in messages]
        assert roles[::2] == [tags["user_tag"]] * len(roles[::2])  # user, assistant, ...
        assert roles[1::2] == [tags["assistant_tag"]] * len(roles[1::2])
        tag_count = sum(m[tags["content_tag"]].count("<image>") for m in messages)
        assert tag_count == len(paths), "The number of images does not match the <image> tokens"
        loaded.append((paths, messages))
    return loaded


@pytest.mark.parametrize("copy_images", [False, True])
def test_sharegpt_paths_resolve_from_the_dataset_info_folder(exported, tmp_path, monkeypatch,
                                                            copy_images):
    out, kept, _ = exported("export.format=sharegpt", "export.name=charts_demo",
                            f"export.copy_images={str(copy_images).lower()}")
    dataset_dir = out / "export"
    if copy_images:  # self-contained: it still resolves after the folder moves
        dataset_dir = Path(shutil.move(str(dataset_dir), str(tmp_path / "moved" / "export")))
    else:
        assert all(Path(r["images"][0]).is_absolute()
                   for r in read_json(dataset_dir / "sharegpt.json"))
    monkeypatch.chdir(tmp_path)  # LLaMA-Factory's fallback (the working directory) must not help
    loaded = llama_factory_images(dataset_dir, "charts_demo")
    assert len(loaded) == len(kept)
    for (paths, messages), sample in zip(loaded, kept):
        assert len(paths) == 1 and Image.open(paths[0]).size[0] > 0
        assert paths[0].endswith(sample["image_1"])
        assert messages[0]["content"].startswith("<image>\n")
        assert messages[1]["content"] == sample["conversations"][1]["value"]
    assert PROVENANCE <= read_json(dataset_dir / "sharegpt.json")[0].keys()


def test_hf_columns_make_a_chat_that_a_llava_model_runs(exported, curation_demo_root):
    import datasets
    import torch
    from transformers import LlavaForConditionalGeneration

    from mmgen.testing.random_models import build_config, build_processor

    out, kept, _ = exported("export.format=hf", "export.copy_images=true")
    shutil.rmtree(out / "export" / "images")  # the images must live inside the datasets folder
    rows = datasets.load_from_disk(str(out / "export" / "hf"))
    assert len(rows) == len(kept) and PROVENANCE <= set(rows.column_names)
    for row, sample in zip(rows, kept):
        assert row["id"] == sample["id"] and row["image_path"] == sample["image_1"]
        assert (curation_demo_root / row["image_path"]).is_file()
        assert "<image>" not in row["question"] and row["question"]
        assert row["answer"] == sample["conversations"][1]["value"]
    processor = build_processor("tiny")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(build_config("tiny", processor.tokenizer)).eval()
    for row in rows.select(range(3)):  # the user's chat: image + question, then the answer
        chat = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": row["question"]}]},
                {"role": "assistant", "content": [{"type": "text", "text": row["answer"]}]}]
        text = processor.apply_chat_template(chat)
        assert text.count("<image>") == 1
        inputs = processor(text=[text], images=[row["image"].convert("RGB")],
                           return_tensors="pt")
        with torch.no_grad():  # two tags for one image would fail here: features != tokens
            logits = model(**inputs).logits
        assert logits.shape[1] == inputs["input_ids"].shape[1]


def with_stray_tags(samples: list[dict]) -> list[dict]:
    """An answer written with an <image> tag, and a question written without one."""
    first, second = samples[0], samples[1]
    question, answer = first["conversations"]
    first["conversations"] = [question, dict(answer, value="<image>\n" + answer["value"])]
    question, answer = second["conversations"]
    second["conversations"] = [dict(question, value=question["value"].replace("<image>\n", "")),
                               answer]
    return samples


@pytest.mark.parametrize("fmt", ["llava", "sharegpt", "hf"])
def test_one_tag_per_image_in_every_format_whatever_the_text_said(exported, fmt):
    out, kept, stats = exported(f"export.format={fmt}", edit=with_stray_tags)
    assert stats["image_tags_fixed"] == 2
    if fmt == "llava":
        turns = [r["conversations"] for r in read_json(out / "export" / "llava.json")[:2]]
    elif fmt == "sharegpt":
        turns = [[{"value": m["content"]} for m in r["messages"]]
                 for r in read_json(out / "export" / "sharegpt.json")[:2]]
    else:
        import datasets

        turns = datasets.load_from_disk(str(out / "export" / "hf"))["conversations"][:2]
    for conversation, sample in zip(turns, kept):
        assert sum(turn["value"].count("<image>") for turn in conversation) == 1
        assert conversation[0]["value"].startswith("<image>\n")
        answer = sample["conversations"][1]["value"].replace("<image>\n", "")
        assert conversation[1]["value"] == answer
