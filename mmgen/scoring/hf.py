"""Score samples with any Hugging Face image-text-to-text model (LLaVA, Qwen2-VL, Idefics...).

Needs the `filter` extra (transformers, and peft for adapters). Each sample is rendered with the
processor's chat template as one user turn (image + question) and one assistant turn (the
answer), and tokenised as one text, as a fine-tuning run does; the first N tokens, N being the
token count of the prompt (the user turn plus the generation prompt), are masked out. So the
answer's tokens are the ones training sees: with a byte-level tokenizer and a prompt ending in
`ASSISTANT:`, " Chess" is one token, where tokenising the answer alone would split "Chess".

End of sequence counts: the loss covers the answer and the end-of-turn token the template puts
after it (Qwen's `<|im_end|>`), or the tokenizer's end-of-sequence token when the template puts
none (llava-hf's template; LLaVA's own fine-tuning ends every answer with `</s>`). These are
the targets LLaVA and LLaMA-Factory train on, and the demo scorer scores its end mark too.
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

        from mmgen.scoring.checkpoints import check_model_source, model_class

        check_model_source(self.model_path, "filter.scorer.model")
        check_model_source(self.processor_path, "filter.scorer.processor")
        self.processor = transformers.AutoProcessor.from_pretrained(self.processor_path)
        # answers are found from the right end of each row's real tokens; right padding also
        # keeps every row's positions as in an unpadded pass
        self.tokenizer.padding_side = "right"
        model = model_class(self.model_class, "filter.scorer.model_class").from_pretrained(
            self.model_path, dtype=self.dtype)
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter)
        self.model = model.to(self.device).eval()
        log.info("scorer %s loaded on %s (%s)", self.name, self.device, self.dtype)

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def conversation_texts(self, question: str, answer: str, with_image: bool) -> tuple[str, str]:
        """The prompt (ending where the answer starts) and the whole conversation, as text."""
        eos = self.tokenizer.eos_token or ""
        if not getattr(self.processor, "chat_template", None):
            image_token = getattr(self.processor, "image_token", "<image>")
            prompt = (f"{image_token}\n" if with_image else "") + f"{question}\n"
            return prompt, prompt + answer + eos
        user = {"role": "user", "content": [{"type": "image"}] * with_image
                + [{"type": "text", "text": question}]}
        assistant = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
        prompt = self.processor.apply_chat_template([user], tokenize=False,
                                                    add_generation_prompt=True)
        whole = self.processor.apply_chat_template([user, assistant], tokenize=False)
        if not whole.startswith(prompt):
            raise ValueError(f"{self.name}: the chat template renders the answer turn in a way "
                             "that does not continue its generation prompt; score this model "
                             "with a processor whose template does (filter.scorer.processor)")
        # the turn's trailing whitespace is a separator no trainer scores
        reply = whole[len(prompt):].rstrip()
        if reply.endswith(answer.strip()):  # the template ends the turn with no token: add EOS
            reply += eos
        return prompt, prompt + reply

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
        """Model inputs for each whole conversation, padded, with `labels` masking the prompt."""
        with_image = bool(samples[0].get("image_1"))
        prompts, texts = zip(*(self.conversation_texts(*prompt_and_answer(sample), with_image)
                               for sample in samples))
        images = ([load_image(image_root, s["image_1"], self.max_image_side) for s in samples]
                  if with_image else None)
        inputs = dict(self.processor(text=list(texts), images=images, return_tensors="pt",
                                     padding=True))
        # the processor expands image placeholders inside the prompt only, so the tokens after
        # the prompt are the same with or without expansion: count them on the plain text
        count = self.tokenizer(list(prompts) + list(texts), add_special_tokens=False)["input_ids"]
        labels = torch.full_like(inputs["input_ids"], IGNORE_INDEX)
        for row, (prompt_ids, text_ids) in enumerate(zip(count[:len(texts)], count[len(texts):])):
            answer_length = len(text_ids) - len(prompt_ids)
            if answer_length <= 0:
                raise ValueError(f"data.json sample '{samples[row].get('id')}': its answer has no "
                                 "tokens; enable filter.checks.min_answer_chars")
            positions = inputs["attention_mask"][row].nonzero().flatten()[-answer_length:]
            labels[row, positions] = inputs["input_ids"][row, positions]
        inputs["labels"] = labels
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
