"""Evaluate any Hugging Face image-text-to-text model (LLaVA, Qwen2-VL, Idefics...), optionally
with the LoRA adapter the train stage saved: batched greedy generation with the model's own chat
template, left-padded, bf16 on a GPU. Needs the `filter` extra (transformers, peft).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from mmgen.errors import UserError
from mmgen.evaluation import BatchEvaluator, Question, ignore_unused
from mmgen.scoring import load_image

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ADAPTER_CONFIG = "adapter_config.json"  # peft's marker of a saved adapter


class HFEvaluator(BatchEvaluator):
    """Greedy answers from a transformers model loaded by hub id or folder, plus an adapter."""

    def __init__(self, model: str | None = None, trained: str | None = None,
                 model_class: str | None = None, processor: str | None = None,
                 dtype: str = "auto", max_image_side: int | None = None, batch_size: int = 8,
                 device: str = "auto", max_new_tokens: int = 16, **other_backends_settings):
        super().__init__(trained, batch_size, device, max_new_tokens)
        ignore_unused("hf", other_backends_settings)
        if not model:
            raise UserError("evaluate.backend.model is empty: name the base model's hub id or "
                            "folder, e.g. evaluate.backend.model=llava-hf/llava-1.5-7b-hf")
        self.model_path, self.model_class, self.max_image_side = model, model_class, max_image_side
        self.processor_path = processor or model
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        if dtype not in DTYPES:
            raise UserError(f"evaluate.backend.dtype '{dtype}' is not one of auto, "
                            f"{', '.join(DTYPES)}")
        self.dtype = DTYPES[dtype]
        self.model = self.processor = None

    @property
    def name(self) -> str:
        return self.model_path + (f"+{self.trained}" if self.trained else "")

    def load(self) -> None:
        """Processor, model and adapter, once; the tokenizer pads on the left for generation."""
        if self.model is not None:
            return
        if self.trained and not (self.trained / ADAPTER_CONFIG).is_file():
            raise UserError(f"{self.trained / ADAPTER_CONFIG} not found: the hf train stage "
                            "saves its LoRA adapter there; run python -m mmgen.train first, or "
                            "evaluate the base model with evaluate.model=base")
        import transformers

        self.processor = transformers.AutoProcessor.from_pretrained(self.processor_path)
        self.tokenizer.padding_side = "left"  # generated tokens must follow every prompt directly
        from mmgen.scoring.checkpoints import model_class

        model = model_class(self.model_class, "evaluate.backend.model_class").from_pretrained(
            self.model_path, dtype=self.dtype)
        if self.trained:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.trained))
        self.model = model.to(self.device).eval()
        log.info("evaluating %s on %s (%s)", self.name, self.device, self.dtype)

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def prompt_text(self, question: str, with_image: bool) -> str:
        """The model's own rendering of one user turn, ending where the answer starts."""
        if getattr(self.processor, "chat_template", None):
            content = [{"type": "image"}] * with_image + [{"type": "text", "text": question}]
            return self.processor.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
        image_token = getattr(self.processor, "image_token", "<image>")
        return (f"{image_token}\n" if with_image else "") + f"{question}\n"

    def predict(self, questions, image_root, write) -> None:
        self.load()
        super().predict(questions, image_root, write)

    @torch.inference_mode()
    def answer_batch(self, batch: Sequence[Question], image_root: Path) -> list[str]:
        """Greedy generation for one batch; the answer is the decoded new tokens, stripped."""
        with_image = batch[0].image is not None
        texts = [self.prompt_text(q.prompt, with_image) for q in batch]
        images = ([load_image(image_root, q.image, self.max_image_side) for q in batch]
                  if with_image else None)
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        inputs = {key: (value.to(self.device, self.dtype) if torch.is_floating_point(value)
                        else value.to(self.device)) for key, value in inputs.items()
                  if torch.is_tensor(value) and key != "token_type_ids"}  # generate() refuses
        pad_id = self.tokenizer.pad_token_id
        output = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens,
                                     pad_token_id=pad_id if pad_id is not None
                                     else self.tokenizer.eos_token_id)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in
                self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
