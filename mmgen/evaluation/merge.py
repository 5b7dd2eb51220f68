"""Merge the LoRA adapter the train stage saved into its base model, and save a plain model
folder (weights + processor) for tools that load only whole models: lmms-eval, or vLLM without
--enable-lora. The base model is the one the adapter records, unless --base names another.

    python -m mmgen.evaluation.merge outputs/NAME/train outputs/NAME/merged [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mmgen.errors import UserError

log = logging.getLogger(__name__)
DTYPES = ("bfloat16", "float16", "float32")


def merge(adapter_dir: Path, out_dir: Path, base: str | None = None,
          dtype: str = "bfloat16", model_class: str | None = None) -> Path:
    """Base model + adapter, merged, saved with the base model's processor into out_dir."""
    import torch
    import transformers
    from peft import PeftModel

    adapter_config = Path(adapter_dir) / "adapter_config.json"
    if not adapter_config.is_file():
        raise UserError(f"{adapter_config} not found: give the folder the hf train stage saved "
                        "its LoRA adapter in (outputs/NAME/train)")
    base = base or json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter_config} names no base model: give it with --base")
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype} is not one of {', '.join(DTYPES)}")
    loader = getattr(transformers, model_class) if model_class \
        else transformers.AutoModelForImageTextToText
    model = loader.from_pretrained(base, dtype=getattr(torch, dtype))
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir)
    transformers.AutoProcessor.from_pretrained(base).save_pretrained(out_dir)
    log.info("merged %s into %s: %s", adapter_dir, base, out_dir)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    """Command line: merge and save."""
    parser = argparse.ArgumentParser(prog="python -m mmgen.evaluation.merge",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("adapter_dir", type=Path, help="the train stage's folder (train/)")
    parser.add_argument("out_dir", type=Path, help="where the merged model goes")
    parser.add_argument("--base", help="base model hub id or folder (default: the adapter's)")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    parser.add_argument("--model-class", help="transformers class; default: AutoModelFor"
                        "ImageTextToText")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        merge(args.adapter_dir, args.out_dir, args.base, args.dtype, args.model_class)
    except UserError as err:
        parser.error(str(err))
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
