"""Stage 6a, export: write the filtered dataset in the format a trainer reads.

    python -m mmgen.export +experiment=demo export.format=llava|sharegpt|hf

Everything goes to `<out_dir>/export/`:
- `llava`: `llava.json`, the list LLaVA's training script reads (`id`, `image`, `conversations`),
  image paths relative to one image folder (`--image_folder`, named in `manifest.json`).
- `sharegpt`: `sharegpt.json` in LLaMA-Factory's ShareGPT layout (`messages` with role/content,
  `images`) plus the `dataset_info.json` entry that registers it. LLaMA-Factory joins each image
  path to the folder of `dataset_info.json` (its `media_dir` default), so the paths are
  `images/...` when the images are copied there and absolute otherwise.
- `hf`: a Hugging Face `datasets` folder `hf/` (save_to_disk, images embedded); extra `[hf]`.
  `question` carries no `<image>` tag (build the chat from `image` + `question`), `image_path`
  is the image's path relative to the dataset root.
Every sample has exactly one `<image>` tag per image, leading its first human turn
(`modes.place_image_tag`); `stats.json` counts the samples this moved (`image_tags_fixed`).
Every record keeps its provenance: keyword, candidate_score (retrieval similarity), icl_indices,
prompt_id, model and target_loss. `export.copy_images=true` hard-links the images into
`export/images/` so the folder is self-contained.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmgen import CONF_DIR, runner
from mmgen.contracts import load_dataset, question_and_answer, write_json
from mmgen.modes import place_image_tag, strip_image_tags
from mmgen.stage import launch, out_dir

log = logging.getLogger(__name__)
PROVENANCE = ("keyword", "candidate_score", "icl_indices", "prompt_id", "model", "target_loss")
MAIN_OUTPUT = {"llava": "llava.json", "sharegpt": "sharegpt.json", "hf": "hf"}
ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def run(cfg: DictConfig) -> Path:
    """Bring the export folder up to date; returns out_dir."""
    return runner.run(cfg, "export")


def outputs(cfg: DictConfig) -> tuple[str, ...]:
    """For the runner: the files this format writes."""
    return (f"export/{MAIN_OUTPUT[str(cfg.export.format)]}", "export/manifest.json")


def compute(cfg: DictConfig, out: Path) -> dict:
    """Write <out>/export/ (cheap, and hf is a folder: made in out_dir, not the shared cache)."""
    return export(cfg, out / "export")


def export(cfg: DictConfig, export_dir: Path) -> dict:
    """Write filtered.json's samples to `export_dir` in `export.format`; returns stats."""
    dataset = load_dataset(out_dir(cfg) / "filtered.json")
    samples, fmt = [tagged(s) for s in dataset["samples"]], str(cfg.export.format)
    fixed = sum(new["conversations"] != old["conversations"]
                for new, old in zip(samples, dataset["samples"]))
    export_dir.mkdir(parents=True, exist_ok=True)
    image_folder = Path(dataset["image_folder"]).resolve()
    if cfg.export.copy_images:
        image_folder = link_images(samples, image_folder, export_dir / "images")
    if fmt == "llava":
        write_json(export_dir / "llava.json", [llava_record(s) for s in samples])
    elif fmt == "sharegpt":
        # LLaMA-Factory reads each path joined to the folder of dataset_info.json (media_dir
        # defaults to dataset_dir); an absolute path survives that join unchanged
        media_root = Path("images") if cfg.export.copy_images else image_folder
        write_json(export_dir / "sharegpt.json",
                   [sharegpt_record(s, media_root) for s in samples])
        write_json(export_dir / "dataset_info.json", {cfg.export.name: {
            "file_name": "sharegpt.json", "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}}})
    else:
        write_hf(samples, image_folder, export_dir / "hf")
    manifest = {"format": fmt, "file": MAIN_OUTPUT[fmt], "samples": len(samples),
                "image_folder": str(image_folder), "images_copied": bool(cfg.export.copy_images),
                "provenance_fields": list(PROVENANCE),
                "source": str((out_dir(cfg) / "filtered.json").resolve())}
    write_json(export_dir / "manifest.json", manifest)
    log.info("export: %d samples as %s in %s (images under %s; %d image tags fixed)",
             len(samples), fmt, export_dir / MAIN_OUTPUT[fmt], image_folder, fixed)
    return {"format": fmt, "samples": len(samples), "path": str(export_dir / MAIN_OUTPUT[fmt]),
            "image_tags_fixed": fixed}


def tagged(sample: dict) -> dict:
    """The sample with one `<image>` tag per image, leading its first human turn."""
    return dict(sample, conversations=place_image_tag(sample["conversations"],
                                                      bool(sample.get("image_1"))))


def provenance(sample: dict) -> dict:
    """Where a sample came from, with null for what its generation did not record."""
    return {key: sample.get(key) for key in PROVENANCE}


def llava_record(sample: dict) -> dict:
    """One entry of LLaVA's training list; text-only samples have no `image`."""
    record = {"id": str(sample["id"])}
    if sample.get("image_1"):
        record["image"] = sample["image_1"]
    return {**record, "conversations": sample["conversations"], **provenance(sample)}


def sharegpt_record(sample: dict, media_root: Path) -> dict:
    """One LLaMA-Factory ShareGPT entry: role/content messages and the image paths under
    `media_root` (relative to the folder of dataset_info.json, or absolute)."""
    messages = [{"role": ROLES[turn["from"]], "content": turn["value"]}
                for turn in sample["conversations"]]
    images = [(media_root / sample["image_1"]).as_posix()] if sample.get("image_1") else []
    return {"id": str(sample["id"]), "messages": messages, "images": images, **provenance(sample)}


def write_hf(samples: list[dict], image_folder: Path, target: Path) -> None:
    """A `datasets` folder (save_to_disk) with the images embedded; needs the `[hf]` extra."""
    try:
        import datasets
    except ImportError as err:
        raise ImportError("export.format=hf needs the datasets package: "
                          "pip install 'mmgen[hf]'") from err
    rows = []
    for sample in samples:
        question, answer = question_and_answer(sample)
        relative = sample.get("image_1")
        rows.append({"id": str(sample["id"]),
                     "image": str(image_folder / relative) if relative else None,
                     "image_path": relative, "question": strip_image_tags(question),
                     "answer": answer, "conversations": sample["conversations"],
                     **provenance(sample)})
    features = datasets.Features({
        "id": datasets.Value("string"), "image": datasets.Image(),
        "image_path": datasets.Value("string"),  # relative to the dataset root (data.json)
        "question": datasets.Value("string"), "answer": datasets.Value("string"),
        "conversations": [{"from": datasets.Value("string"), "value": datasets.Value("string")}],
        "keyword": datasets.Value("string"), "candidate_score": datasets.Value("float64"),
        "icl_indices": [datasets.Value("int64")],
        "prompt_id": datasets.Value("string"), "model": datasets.Value("string"),
        "target_loss": datasets.Value("float64")})
    shutil.rmtree(target, ignore_errors=True)
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(target))


def link_images(samples: list[dict], source: Path, target: Path) -> Path:
    """Hard-link (copy across devices) each sample's image under `target`; returns `target`."""
    for relative in sorted({s["image_1"] for s in samples if s.get("image_1")}):
        destination = target / relative
        if destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / relative, destination)
        except OSError:
            shutil.copyfile(source / relative, destination)
    return target


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
