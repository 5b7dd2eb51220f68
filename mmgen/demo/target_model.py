"""The demo's target model: a tiny image + question -> answer model over characters.

It stands in for the small VLM (LLaVA-1.5-7B in the paper) whose losses drive the filter. A CNN
turns the image into an 8x8 grid of features, a bidirectional GRU reads the question, and a GRU
decoder spells the answer while attending over both. Its loss on an answer is the mean
cross-entropy over the answer's characters plus the end mark: the same quantity the Hugging
Face scorer computes over answer tokens. Trained by `mmgen/demo/train_target_model.py`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mmgen.imageio import to_rgb

# the base model: never trained on a chart question (see train_target_model.py)
CHECKPOINT = Path(__file__).parent / "assets" / "target_base.pt"
PAD, BOS, EOS, UNK = 0, 1, 2, 3
FIRST_CHAR, LAST_CHAR = 32, 126  # printable ASCII; anything else reads as UNK
VOCAB_SIZE = 4 + LAST_CHAR - FIRST_CHAR + 1
IMAGE_SIDE = 64  # images are squashed to this square before the CNN
MAX_QUESTION_CHARS = 160  # longer questions keep their end, where the asked-about part is
MAX_ANSWER_CHARS = 120  # longer answers are cut; the loss covers what is left


def encode_chars(text: str) -> list[int]:
    """Character ids of `text` (no BOS/EOS)."""
    return [4 + ord(c) - FIRST_CHAR if FIRST_CHAR <= ord(c) <= LAST_CHAR else UNK for c in text]


def image_tensor(image: Image.Image) -> torch.Tensor:
    """A (3, IMAGE_SIDE, IMAGE_SIDE) float tensor in [-1, 1]."""
    small = to_rgb(image).resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)
    pixels = torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8)
    return pixels.view(IMAGE_SIDE, IMAGE_SIDE, 3).permute(2, 0, 1).float() / 127.5 - 1.0


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(1, max(len(row) for row in rows))
    return torch.tensor([row + [PAD] * (width - len(row)) for row in rows], dtype=torch.long)


def encode_batch(questions: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
    """Padded question ids, decoder inputs (BOS + answer) and targets (answer + EOS)."""
    question_ids = [encode_chars(q)[-MAX_QUESTION_CHARS:] or [UNK] for q in questions]
    answer_ids = [encode_chars(a)[:MAX_ANSWER_CHARS] for a in answers]
    return {"question": _pad(question_ids),
            "decoder_input": _pad([[BOS] + ids for ids in answer_ids]),
            "target": _pad([ids + [EOS] for ids in answer_ids])}


class TinyVQA(nn.Module):
    """CNN image grid + GRU question encoder + attentive GRU answer decoder."""

    def __init__(self, width: int = 128, embed: int = 64):
        super().__init__()
        self.config = {"width": width, "embed": embed}
        self.image_encoder = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, 96, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(96, width, 3, stride=1, padding=1))  # -> (width, 8, 8)
        self.position = nn.Parameter(torch.zeros(1, (IMAGE_SIDE // 8) ** 2, width))
        self.embedding = nn.Embedding(VOCAB_SIZE, embed, padding_idx=PAD)
        self.question_encoder = nn.GRU(embed, width // 2, batch_first=True, bidirectional=True)
        self.decoder = nn.GRU(embed, width, batch_first=True)
        self.initial_state = nn.Linear(2 * width, width)
        self.output = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(),
                                    nn.Linear(width, VOCAB_SIZE))

    def encode(self, images: torch.Tensor, question: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Memory (image grid + question states), its mask and the decoder's start state."""
        grid = self.image_encoder(images).flatten(2).transpose(1, 2) + self.position
        question_mask = question != PAD
        # packed, so the backward direction starts at each question's last character, not at
        # the padding: a sample scores the same alone or in any batch
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(question), question_mask.sum(1).cpu(), batch_first=True,
            enforce_sorted=False)
        question_states, _ = nn.utils.rnn.pad_packed_sequence(
            self.question_encoder(packed)[0], batch_first=True, total_length=question.shape[1])
        memory = torch.cat([grid, question_states], dim=1)
        memory_mask = torch.cat([torch.ones(grid.shape[:2], dtype=torch.bool, device=grid.device),
                                 question_mask], dim=1)
        question_mean = ((question_states * question_mask[..., None]).sum(1)
                         / question_mask.sum(1, keepdim=True).clamp(min=1))
        start = torch.tanh(self.initial_state(torch.cat([grid.mean(1), question_mean], dim=1)))
        return memory, memory_mask, start[None].contiguous()

    def decode(self, decoder_input: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
               state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-character logits for `decoder_input` given the memory, and the decoder's state."""
        states, state = self.decoder(self.embedding(decoder_input), state)
        attention = torch.einsum("bld,bmd->blm", states, memory) / memory.shape[-1] ** 0.5
        attention = attention.masked_fill(~memory_mask[:, None, :], float("-inf")).softmax(-1)
        context = torch.einsum("blm,bmd->bld", attention, memory)
        return self.output(torch.cat([states, context], dim=-1)), state

    def forward(self, images: torch.Tensor, question: torch.Tensor,
                decoder_input: torch.Tensor) -> torch.Tensor:
        """Next-character logits (batch, answer length + 1, vocab)."""
        memory, memory_mask, start = self.encode(images, question)
        return self.decode(decoder_input, memory, memory_mask, start)[0]


def sequence_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per row over the non-padding targets (answer characters + EOS)."""
    token_losses = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=PAD,
                                   reduction="none")
    counts = (target != PAD).sum(1).clamp(min=1)
    return token_losses.sum(1) / counts


def images_tensor(images: Sequence[Image.Image | None]) -> torch.Tensor:
    """A (batch, 3, side, side) tensor; a missing image (text-only sample) reads as plain grey."""
    blank = torch.zeros(3, IMAGE_SIDE, IMAGE_SIDE)
    return torch.stack([image_tensor(image) if image is not None else blank for image in images])


@torch.inference_mode()
def answer(model: TinyVQA, images: Sequence[Image.Image | None], questions: Sequence[str],
           max_chars: int = MAX_ANSWER_CHARS) -> list[str]:
    """Greedy answers, one per (image, question), up to the end mark or `max_chars` characters."""
    if len(images) != len(questions):
        raise ValueError(f"answer(): {len(images)} images but {len(questions)} questions")
    if not questions:
        return []
    device = next(model.parameters()).device
    question_ids = encode_batch(list(questions), [""] * len(questions))["question"].to(device)
    memory, memory_mask, state = model.encode(images_tensor(images).to(device), question_ids)
    current = torch.full((len(questions), 1), BOS, dtype=torch.long, device=device)
    chosen, finished = [], torch.zeros(len(questions), dtype=torch.bool, device=device)
    for _ in range(max_chars):
        logits, state = model.decode(current, memory, memory_mask, state)
        current = logits[:, -1].argmax(-1, keepdim=True)
        finished |= current[:, 0] == EOS
        chosen.append(current.masked_fill(finished[:, None], PAD))
        if finished.all():
            break
    rows = torch.cat(chosen, dim=1).tolist() if chosen else [[] for _ in questions]
    return [decode_chars(row) for row in rows]


def decode_chars(ids: Sequence[int]) -> str:
    """Text of character ids up to the first end mark or padding; UNK reads as '?'."""
    text = []
    for index in ids:
        if index in (EOS, PAD):
            break
        text.append("?" if index < 4 else chr(index - 4 + FIRST_CHAR))
    return "".join(text)


def load_target_model(path: str | Path | None = None, device: str = "cpu") -> TinyVQA:
    """The committed demo target model (or another checkpoint written by the training script)."""
    path = Path(path) if path else CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"demo target model checkpoint '{path}' not found; train one with "
                                "python -m mmgen.demo.train_target_model")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyVQA(**checkpoint["config"])
    model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
    return model.to(device).eval()


def save_target_model(model: TinyVQA, path: str | Path, metadata: dict,
                      half: bool = True) -> None:
    """Save weights (fp16 halves a committed file) with the model's shape and metadata."""
    state = {k: v.half() if half and v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    torch.save({"config": model.config, "state_dict": state, "metadata": metadata}, path)
