"""Score samples with any Hugging Face image-text-to-text model (LLaVA, Qwen2-VL, Idefics...).

Needs the `filter` extra (transformers, and peft for adapters). The prompt is the processor's
chat template applied to one user turn (image + question) with the generation prompt added;
the answer's tokens follow it, and only they count in the loss, as in supervised fine-tuning.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from mmgen.scoring import Scorer, batches, load_image, prompt_and_answer

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class HFScorer(Scorer):
    """Mean answer-token loss from a transformers model loaded by hub id or local folder."""

    def __init__(self, model: str | None = None, model_class: str | None = None,
                 processor: str | None = None, adapter: str | None = None, dtype: str = "auto",
                 max_image_side: int | None = None, device: str = "auto", batch_size: int = 8):
        super().__init__(device, batch_size)
        if not model:
            raise ValueError("filter.scorer.model is empty: name a Hugging Face hub id or a local "
                             "model folder, e.g. filter.scorer.model=llava-hf/llava-1.5-7b-hf")
        self.model_path, self.model_class, self.adapter = model, model_class, adapter
        self.processor_path = processor or model
        self.max_image_side = max_image_side
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        if dtype not in DTYPES:
            raise ValueError(f"filter.scorer.dtype '{dtype}' is not one of auto, "
                             f"{', '.join(DTYPES)}")
        self.dtype = DTYPES[dtype]
        self.model = self.processor = None

    @property
    def name(self) -> str:
        return self.model_path + (f"+{self.adapter}" if self.adapter else "")

    def load(self) -> None:
        """Load processor, model and optional adapter once (never at import)."""
        if self.model is not None:
            return
        import transformers

        self.processor = transformers.AutoProcessor.from_pretrained(self.processor_path)
        model_class = transformers.AutoModelForImageTextToText
        if self.model_class:
            model_class = getattr(transformers, self.model_class, None)
            if model_class is None:
                raise ValueError(f"filter.scorer.model_class '{self.model_class}' is not a class "
                                 f"in transformers {transformers.__version__}")
        model = model_class.from_pretrained(self.model_path, dtype=self.dtype)
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter)
        self.model = model.to(self.device).eval()
        log.info("scorer %s loaded on %s (%s)", self.name, self.device, self.dtype)

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

    def score(self, samples: Sequence[dict], image_root: str | Path) -> list[float]:
        """Mean answer-token loss per sample, batched; text-only samples are batched apart.

        The next batch is decoded and tokenised in a thread while the model runs the current
        one, so a GPU does not wait for the CPU between batches.
        """
        self.load()
        with_image = [i for i, s in enumerate(samples) if s.get("image_1")]
        text_only = [i for i, s in enumerate(samples) if not s.get("image_1")]
        groups = [*batches(with_image, self.batch_size), *batches(text_only, self.batch_size)]
        losses: dict[int, float] = {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = deque(pool.submit(self.encode, [samples[i] for i in group], image_root)
                            for group in groups[:2])
            for number, group in enumerate(groups):
                inputs = pending.popleft().result()
                if number + 2 < len(groups):
                    upcoming = [samples[i] for i in groups[number + 2]]
                    pending.append(pool.submit(self.encode, upcoming, image_root))
                losses.update(zip(group, self.forward(inputs)))
        return [losses[i] for i in range(len(samples))]

    def encode(self, samples: Sequence[dict], image_root: str | Path) -> dict[str, torch.Tensor]:
        """Model inputs for prompt + answer, right-padded, with `labels` masking all but answers."""
        questions, answers = zip(*(prompt_and_answer(sample) for sample in samples))
        with_image = bool(samples[0].get("image_1"))
        texts = [self.prompt_text(question, with_image) for question in questions]
        images = ([load_image(image_root, s["image_1"], self.max_image_side) for s in samples]
                  if with_image else None)
        prompt_inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        answer_ids = self.tokenizer(list(answers), add_special_tokens=False)["input_ids"]
        prompt_ids = prompt_inputs.pop("input_ids")
        prompt_mask = prompt_inputs.pop("attention_mask")
        # per-token side inputs (e.g. token type ids) follow the ids; answer tokens get 0
        per_token = {k: v for k, v in prompt_inputs.items()
                     if torch.is_tensor(v) and v.shape[:2] == prompt_ids.shape}
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in ["input_ids", "labels", *per_token]}
        for row, answer in enumerate(answer_ids):
            keep = prompt_mask[row].bool()  # drops padding on whichever side the tokenizer pads
            answer = torch.tensor(answer, dtype=prompt_ids.dtype)
            prompt = prompt_ids[row][keep]
            rows["input_ids"].append(torch.cat([prompt, answer]))
            rows["labels"].append(torch.cat([torch.full_like(prompt, IGNORE_INDEX), answer]))
            for key, values in per_token.items():
                rows[key].append(torch.cat([values[row][keep], values.new_zeros(len(answer))]))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        pad_values = {"input_ids": pad_id, "labels": IGNORE_INDEX}
        inputs = {key: torch.nn.utils.rnn.pad_sequence(values, batch_first=True,
                                                       padding_value=pad_values.get(key, 0))
                  for key, values in rows.items()}
        lengths = torch.tensor([len(ids) for ids in rows["input_ids"]])
        inputs["attention_mask"] = (torch.arange(inputs["input_ids"].shape[1])[None, :]
                                    < lengths[:, None]).long()
        inputs.update({k: v for k, v in prompt_inputs.items() if k not in per_token})
        return inputs

    def _to_device(self, value):
        if not torch.is_tensor(value):
            return value
        if torch.is_floating_point(value):  # pixel values follow the model's dtype
            return value.to(self.device, self.dtype)
        return value.to(self.device)

    @torch.inference_mode()
    def forward(self, inputs: dict[str, torch.Tensor]) -> list[float]:
        """Mean answer-token loss of each row of encoded inputs, in one forward pass."""
        inputs = dict(inputs)
        labels = inputs.pop("labels").to(self.device)
        inputs = {key: self._to_device(value) for key, value in inputs.items()}
        logits = self.model(**inputs).logits
        return answer_losses(logits, labels)


def answer_losses(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Per-row mean cross-entropy of the next-token predictions at unmasked label positions."""
    targets = labels[:, 1:]
    answer_positions = targets != IGNORE_INDEX
    # only the answer positions' logits are upcast: the full (batch, length, vocab) would not fit
    token_losses = F.cross_entropy(logits[:, :-1][answer_positions].float(),
                                   targets[answer_positions], reduction="none")
    counts = answer_positions.sum(dim=1)
    sums = torch.zeros(len(labels), device=token_losses.device).index_add_(
        0, answer_positions.nonzero()[:, 0], token_losses)
    if bool((counts == 0).any()):
        raise ValueError("a sample's answer has no tokens after tokenisation; "
                         "enable filter.checks.min_answer_chars to drop empty answers")
    return (sums / counts).tolist()
