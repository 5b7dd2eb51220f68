"""The export stage: LLaVA, ShareGPT (LLaMA-Factory) and Hugging Face datasets, with provenance."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from curation_data import stub_generate, write_upstream

from mmgen import export
from mmgen.contracts import load_dataset, read_json

PROVENANCE = {"keyword", "candidate_score", "icl_indices", "prompt_id", "model", "target_loss"}


@pytest.fixture(autouse=True)
def upstream_done(monkeypatch):
    stub_generate(monkeypatch)


@pytest.fixture
def exported(make_config, curation_demo_root, tmp_path):
    """Run the export with the given overrides; returns (out_dir, the filtered samples)."""
    def _run(*overrides: str) -> tuple[Path, list[dict]]:
        out = tmp_path / "out"
        if not (out / "data.json").exists():
            write_upstream(out, curation_demo_root)
        export.run(make_config(f"dataset.root={curation_demo_root}", *overrides, out_dir=out))
        return out, load_dataset(out / "filtered.json")["samples"]
    return _run


def test_llava_export_is_the_filtered_set_with_provenance(exported):
    out, kept = exported()
    records = read_json(out / "export" / "llava.json")
    manifest = read_json(out / "export" / "manifest.json")
    assert isinstance(records, list) and len(records) == len(kept) == manifest["samples"] > 0
    assert [r["id"] for r in records] == [s["id"] for s in kept]
    folder = Path(manifest["image_folder"])
    for record, sample in zip(records, kept):
        assert not Path(record["image"]).is_absolute() and (folder / record["image"]).is_file()
        assert record["conversations"][0]["value"].startswith("<image>")
        assert PROVENANCE <= record.keys()
        assert record["target_loss"] == sample["target_loss"]
        assert record["keyword"] == sample["keyword"]
    assert read_json(out / "stats.json")["export"]["samples"] == len(kept)


def test_sharegpt_export_registers_with_llama_factory(exported):
    out, kept = exported("export.format=sharegpt", "export.name=charts_demo")
    records = read_json(out / "export" / "sharegpt.json")
    info = read_json(out / "export" / "dataset_info.json")
    assert info["charts_demo"]["file_name"] == "sharegpt.json"
    assert info["charts_demo"]["formatting"] == "sharegpt"
    assert len(records) == len(kept)
    first = records[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][0]["content"].count("<image>") == len(first["images"]) == 1
    assert first["messages"][1]["content"] == kept[0]["conversations"][1]["value"]
    assert PROVENANCE <= first.keys()


def test_copied_images_make_a_self_contained_folder(exported):
    out, kept = exported("export.copy_images=true")
    manifest = read_json(out / "export" / "manifest.json")
    assert Path(manifest["image_folder"]) == out / "export" / "images"
    assert all((out / "export" / "images" / s["image_1"]).is_file() for s in kept)


def test_hf_datasets_folder_embeds_images(exported):
    import datasets

    out, kept = exported("export.format=hf", "export.copy_images=true")
    shutil.rmtree(out / "export" / "images")  # the images must live inside the datasets folder
    loaded = datasets.load_from_disk(str(out / "export" / "hf"))
    assert len(loaded) == len(kept)
    row = loaded[0]
    assert row["id"] == kept[0]["id"] and row["answer"] == kept[0]["conversations"][1]["value"]
    assert row["image"].size[0] > 0 and PROVENANCE <= set(loaded.column_names)


def test_unknown_format_is_refused(exported):
    with pytest.raises(ValueError, match="export.format 'parquet'"):
        exported("export.format=parquet")
