"""Checks on the scorer's checkpoint that run before any stage: the folder exists, it is a model
of the kind the scorer reads, and a hub id is reachable, each failing in seconds with the fix.

from_pretrained gives none of this: a missing absolute path reads as a malformed repo id, a
missing relative one is tried on the hub with retries for minutes, and a text-only model gets
transformers' list of every model type.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from mmgen.errors import UserError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # "llava-hf/llava-1.5-7b-hf", "gpt2"
TRUE = {"1", "ON", "YES", "TRUE"}
HF_OPTIONS = {"qwen2_vl": "qwen2_vl_2b"}  # model_type -> filter option; others: llava_1_5_7b
VLM_EXAMPLES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "paligemma")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: nothing may be fetched."""
    return any(os.environ.get(name, "").upper() in TRUE
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cached_file(repo_id: str, filename: str) -> Path | None:
    """`filename` of hub repo `repo_id` in the local Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None


def check_model_source(source: str, key: str) -> None:
    """Fail unless `source` is an existing folder or a hub id that may be fetched (no network)."""
    if Path(source).expanduser().exists():
        if not Path(source).expanduser().is_dir():
            raise UserError(f"{key} '{source}' is a file; give the model's folder (the one "
                            "holding config.json) or a Hugging Face hub id")
        return
    if not HUB_ID.fullmatch(source):
        raise UserError(f"{key} '{source}': folder not found (looked in "
                        f"'{Path(source).expanduser().resolve()}'); give an existing model "
                        "folder or a Hugging Face hub id such as llava-hf/llava-1.5-7b-hf")
    if hub_offline() and cached_file(source, "config.json") is None:
        raise UserError(f"{key} '{source}': folder not found, and with HF_HUB_OFFLINE set the "
                        "hub id is not in the Hugging Face cache either; fix the path, or "
                        f"download the model first (hf download {source})")


def model_config(source: str, key: str) -> dict | None:
    """The checkpoint's config.json as a dict: from the folder, the cache, or one hub request.

    None when the hub answers without a config (the model then loads or fails as usual)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise UserError(f"{key} '{source}' has no config.json: it is not a Hugging Face "
                            "model folder (save one with save_pretrained)")
        return json.loads((folder / "config.json").read_text())
    cached = cached_file(source, "config.json")
    if cached is not None:
        return json.loads(cached.read_text())
    return hub_config(source, key)


def hub_config(repo_id: str, key: str) -> dict | None:
    """The config of a hub model from one request with a short timeout, no retries."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return HfApi().model_info(repo_id, timeout=10).config
    except RepositoryNotFoundError:
        raise UserError(f"{key} '{repo_id}': no such folder here, and no such model on the "
                        "Hugging Face hub (or it is private: log in with `hf auth login`)"
                        ) from None
    except Exception as err:  # noqa: BLE001  (network errors differ across hub versions)
        raise UserError(f"{key} '{repo_id}': no such folder here, and the Hugging Face hub "
                        f"could not be asked about it ({type(err).__name__}: {err}); fix the "
                        f"path, or download the model first (hf download {repo_id})") from None


def check_vision_language(config: dict, source: str, key: str) -> None:
    """Fail unless the config's model type loads as an image-text-to-text model."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    model_type = config.get("model_type")
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return
    config_class = CONFIG_MAPPING_NAMES.get(model_type, f"model_type {model_type!r}")
    known = MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    examples = [name for name in VLM_EXAMPLES if name in known]
    raise UserError(f"{key} '{source}' is not a vision-language model (config class "
                    f"{config_class}); use one of the image-text-to-text types "
                    f"({', '.join(examples)} and {len(known) - len(examples)} more), e.g. "
                    "filter=llava_1_5_7b or filter=qwen2_vl_2b, or name the model's class in "
                    "filter.scorer.model_class")


def validate_hf_scorer(scorer) -> None:
    """The HF scorer's model, processor, class and adapter, before anything runs."""
    if not scorer.get("model"):
        raise UserError("filter.scorer.model is empty: name a Hugging Face hub id or a local "
                        "model folder, e.g. filter.scorer.model=llava-hf/llava-1.5-7b-hf")
    model = str(scorer.model)
    check_model_source(model, "filter.scorer.model")
    if scorer.get("processor"):
        check_model_source(str(scorer.processor), "filter.scorer.processor")
    config = model_config(model, "filter.scorer.model")
    if scorer.get("model_class"):
        import transformers

        if getattr(transformers, str(scorer.model_class), None) is None:
            raise UserError(f"filter.scorer.model_class '{scorer.model_class}' is not a class "
                            f"in transformers {transformers.__version__}")
    elif config is not None:
        check_vision_language(config, model, "filter.scorer.model")
    if scorer.get("adapter"):
        adapter = str(scorer.adapter)
        check_model_source(adapter, "filter.scorer.adapter")
        folder = Path(adapter).expanduser()
        if folder.is_dir() and not (folder / "adapter_config.json").is_file():
            raise UserError(f"filter.scorer.adapter '{adapter}' has no adapter_config.json: "
                            "not a peft adapter folder (save one with save_pretrained)")


def validate_demo_scorer(scorer) -> None:
    """The demo scorer reads a .pt checkpoint; a Hugging Face folder means another filter."""
    if not scorer.get("model"):
        return
    path = Path(str(scorer.model)).expanduser()
    if (path / "config.json").is_file():
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
        option = HF_OPTIONS.get(model_type, "llava_1_5_7b")
        raise UserError(f"filter.scorer.model '{scorer.model}' is a Hugging Face model folder, "
                        "but this filter scores with the demo target model (a .pt checkpoint); "
                        f"did you mean `filter={option}`? (python -m mmgen.filter "
                        f"filter={option} filter.scorer.model={scorer.model})")
    if path.is_dir():
        raise UserError(f"filter.scorer.model '{scorer.model}' is a folder without config.json; "
                        "the demo scorer reads one .pt checkpoint file (from python -m "
                        "mmgen.demo.train_target_model), a Hugging Face scorer a model folder")
    if not path.is_file():
        raise UserError(f"filter.scorer.model '{scorer.model}': demo target model checkpoint "
                        f"not found (looked in '{path.resolve()}'); train one with "
                        "python -m mmgen.demo.train_target_model, or set it to null")


def model_class(name: str | None, key: str):
    """The transformers class `key` names (AutoModelForImageTextToText when null)."""
    import transformers

    if not name:
        return transformers.AutoModelForImageTextToText
    found = getattr(transformers, name, None)
    if found is None:
        raise UserError(f"{key} '{name}' is not a class in transformers {transformers.__version__}")
    return found
