"""Token and cost estimates: image tokens by detail and tiling, text tokens by length, prices."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from omegaconf import DictConfig

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # rough average for English text with the GPT-4o tokenizer
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per message
# GPT-4o vision pricing: a base cost plus a cost per 512 px tile after two downscaling steps
IMAGE_BASE_TOKENS, IMAGE_TILE_TOKENS, TILE_SIDE = 85, 170, 512
HIGH_DETAIL_MAX_SIDE, HIGH_DETAIL_SHORT_SIDE = 2048, 768


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """Prompt tokens an image costs: 85 at low detail; 85 + 170 per 512 px tile at high/auto."""
    if detail == "low":
        return IMAGE_BASE_TOKENS
    scale = min(1.0, HIGH_DETAIL_MAX_SIDE / max(width, height, 1))  # fit in 2048 x 2048
    width, height = width * scale, height * scale
    scale = min(1.0, HIGH_DETAIL_SHORT_SIDE / max(1, min(width, height)))  # short side to 768
    width, height = width * scale, height * scale
    tiles = math.ceil(width / TILE_SIDE) * math.ceil(height / TILE_SIDE)
    return IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * tiles


def text_tokens(text: str) -> int:
    """Estimated tokens of a text (no tokenizer needed: characters / 4)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def request_tokens(messages: list[dict], image_token_counts: list[int]) -> int:
    """Estimated prompt tokens of a chat request: its texts plus its images."""
    total = sum(image_token_counts)
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        content = message["content"]
        if isinstance(content, str):
            total += text_tokens(content)
        else:
            total += sum(text_tokens(part["text"]) for part in content if part["type"] == "text")
    return total


@dataclass
class Prices:
    input_per_1m: float  # USD per 1M prompt tokens
    output_per_1m: float  # USD per 1M completion tokens
    known: bool = True  # false when the model has no entry in generate.prices

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for this many tokens."""
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


def prices_for(cfg: DictConfig) -> Prices:
    """The configured price of backend.model, scaled by backend.price_scale (Batch API: 0.5)."""
    table = cfg.generate.prices
    model = cfg.backend.model
    if model not in table:
        log.warning("no price for model %r in generate.prices (known: %s); cost shows as 0 and "
                    "generate.max_cost_usd cannot stop the run. Add "
                    "generate.prices.%s={input: USD_PER_1M, output: USD_PER_1M}",
                    model, ", ".join(table) or "none", model)
        return Prices(0.0, 0.0, known=False)
    scale = cfg.backend.price_scale
    return Prices(table[model].input * scale, table[model].output * scale)
