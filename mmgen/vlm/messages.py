"""Chat requests from prompt records, and the mode's JSON items from replies.

The same request body goes to the online API, into the Batch API files and into a dry run's
requests.jsonl, so all three send exactly the same thing.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping

from mmgen import modes
from mmgen.vlm.images import EncodedImage

FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


class ReplyFormatError(ValueError):
    """A reply is not the mode's JSON list; the message says what is wrong."""


def image_paths(prompt: dict) -> list[str]:
    """The prompt's image paths in content order (the candidate, if any, is last)."""
    return [part["path"] for part in prompt["content"] if part["type"] == "image"]


def build_messages(prompt: dict, images: list[EncodedImage], detail: str) -> list[dict]:
    """Chat messages for a prompt record: system text, then the ordered text and image parts."""
    encoded = iter(images)
    parts = []
    for part in prompt["content"]:
        if part["type"] == "text":
            parts.append({"type": "text", "text": part["text"]})
        else:
            image = next(encoded)
            parts.append({"type": "image_url", "image_url": {"url": image.url, "detail": detail}})
    messages = [{"role": "system", "content": prompt["system"]}] if prompt.get("system") else []
    return messages + [{"role": "user", "content": parts}]


def request_body(model: str, messages: list[dict], temperature: float | None,
                 max_tokens: int | None) -> dict:
    """The /chat/completions body; options left as null are not sent (server defaults)."""
    body: dict = {"model": model, "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def extract_json(text: str):
    """The JSON value in a reply: the whole text, a fenced block, or the outermost [...]."""
    text = text.strip()
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except ValueError as err:
        start, end = text.find("["), text.rfind("]")
        if 0 <= start < end:
            try:
                return json.loads(text[start:end + 1])
            except ValueError:
                pass
        raise ReplyFormatError(f"the reply is not valid JSON ({err.msg} at line {err.lineno} "
                               f"column {err.colno})") from None


def parse_items(text: str | None, mode_cfg: Mapping, wanted: int) -> tuple[list[dict], int]:
    """The reply's valid items (at most `wanted`) and how many it held; raises ReplyFormatError."""
    if not text or not text.strip():
        raise ReplyFormatError("the reply is empty")
    value = extract_json(text)
    if isinstance(value, dict):  # {"items": [...]} or a lone object: accept what is meant
        lists = [item for item in value.values() if isinstance(item, list)]
        value = lists[0] if len(lists) == 1 else [value]
    try:
        items = modes.validate_items(mode_cfg, value)
    except ValueError as err:
        raise ReplyFormatError(str(err)) from None
    if not items:
        raise ReplyFormatError("the reply is an empty list")
    return items[:wanted], len(items)


def format_fix_messages(messages: list[dict], bad_reply: str, problem: str, keys,
                        wanted: int) -> list[dict]:
    """The original messages + the bad reply + a turn saying what was wrong and the format."""
    request = (f"Your reply could not be used: {problem}. "
               f"{modes.reply_format(keys, wanted)} No other text.")
    return messages + [{"role": "assistant", "content": bad_reply or ""},
                       {"role": "user", "content": request}]
