"""Generation modes: the prompt text a mode sends, the reply items it expects, and the training
samples each item becomes. The wording lives in conf/mode/<name>.yaml; this module only fills it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping

from omegaconf import DictConfig

IMAGE_TAG = "<image>"  # the image placeholder of LLaVA, LLaMA-Factory and the HF export
# text a training template reads as a token rather than words: image/video/audio placeholders,
# Qwen-style <|...|> markers, Llama's <s> </s>; the teacher must never write them
SPECIAL_TAG = re.compile(
    r"<\|[^<>|]*\|>|</?(?:image|img|video|audio)(?:[ _]?\d+)?>|</?s>|<unk>|<pad>", re.IGNORECASE
)
_IMAGE_TAG_AND_SPACE = re.compile(re.escape(IMAGE_TAG) + r"[ \t]*\n?")


def reply_format(keys, n: int) -> str:
    """The sentence every prompt carries, e.g.
    `Reply with only a JSON list of 3 objects with the keys "Q", "A".`"""
    quoted = ", ".join(json.dumps(str(key)) for key in keys)
    return f"Reply with only a JSON list of {n} objects with the keys {quoted}."


def task_phrase(description: str) -> str:
    """The dataset description as a phrase inside a sentence: no trailing period, and a capital
    first letter lowered unless the first word is an acronym ("Spatial reasoning" -> "spatial
    reasoning", "AI2D diagrams" unchanged)."""
    phrase = description.strip().rstrip(".").strip()
    if len(phrase) > 1 and phrase[0].isupper() and not phrase[1].isupper():
        phrase = phrase[0].lower() + phrase[1:]
    return phrase


def render_prompt_text(mode_cfg: DictConfig | Mapping, description: str, n: int,
                       examples_text: str) -> str:
    """The user text of one prompt: the mode's instruction filled in, then the reply format."""
    instruction = mode_cfg["instruction"].format(
        description=task_phrase(description), n=n, examples=examples_text.strip()
    )
    return f"{instruction.strip()}\n\n{reply_format(mode_cfg['reply_keys'], n)}"


def validate_items(mode_cfg: DictConfig | Mapping, items) -> list[dict]:
    """Check reply items against the mode's keys; return them with only those keys (stripped).

    Raises ValueError naming the item (0-based) and the key when an item is not an object, a
    key is missing, or a value is not a non-empty string. (ValueError, not TypeError: a bad
    reply is bad data from the teacher, and callers catch ValueError to ask for a fix.)
    """
    keys = list(mode_cfg["reply_keys"])
    expected = ", ".join(json.dumps(key) for key in keys)
    if not isinstance(items, list):
        problem = f"reply: expected a JSON list of objects with the keys {expected}"
        raise ValueError(f"{problem}, got {type(items).__name__}")  # noqa: TRY004
    checked = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problem = f"item {index}: expected an object with the keys {expected}"
            raise ValueError(f"{problem}, got {type(item).__name__}")  # noqa: TRY004
        for key in keys:
            if key not in item:
                raise ValueError(f"item {index}: missing key {json.dumps(key)} "
                                 f"(every item needs the keys {expected})")
            value, where = item[key], f"item {index} key {json.dumps(key)}"
            if not isinstance(value, str):
                got = f"{type(value).__name__} {json.dumps(value)[:60]}"
                raise ValueError(f"{where}: expected a string, got {got}")  # noqa: TRY004
            if not value.strip():
                raise ValueError(f"{where}: is empty")
            tag = SPECIAL_TAG.search(value)
            if tag:  # a second <image> misaligns LLaVA and stops LLaMA-Factory's whole dataset
                raise ValueError(f"{where}: contains {tag.group()!r}, a special token of the "
                                 "training templates; write the text without it")
        checked.append({key: item[key].strip() for key in keys})
    return checked


class _Fields(dict):
    """Template fields; a placeholder the item lacks names the template and the key."""

    def __init__(self, values: dict, template: str):
        super().__init__(values)
        self.template = template

    def __missing__(self, key: str) -> str:
        raise ValueError(f"sample template {self.template!r} uses {{{key}}}, which is not one of "
                         f"{sorted(self)}; fix the mode's `samples` or `reply_keys`")


def _fill(template: str, fields: dict) -> str:
    return template.format_map(_Fields(fields, template))


def training_conversations(mode_cfg: DictConfig | Mapping, item: Mapping,
                           description: str) -> list[list[dict]]:
    """The training conversations one valid item becomes, from the mode's sample templates."""
    fields = {**{key: str(value) for key, value in item.items()},
              "description": task_phrase(description)}
    conversations = []
    for template in mode_cfg["samples"]:
        conversations.append([
            {"from": "human", "value": _fill(template["human"], fields)},
            {"from": "gpt", "value": _fill(template["gpt"], fields)},
        ])
    return conversations


def strip_image_tags(text: str) -> str:
    """`text` without its `<image>` tags (and the space or newline after each)."""
    return _IMAGE_TAG_AND_SPACE.sub("", text).strip()


def place_image_tag(conversation: list[dict], has_image: bool) -> list[dict]:
    """The turns with every `<image>` removed, then one leading the first human turn if the
    sample has an image: as many tags as images, where LLaVA and LLaMA-Factory expect it."""
    turns = [dict(turn, value=strip_image_tags(turn["value"])) if IMAGE_TAG in turn["value"]
             else dict(turn) for turn in conversation]
    if has_image:
        first_human = next((i for i, turn in enumerate(turns) if turn["from"] == "human"), None)
        if first_human is None:
            raise ValueError("a sample with an image needs a human turn to carry its <image> tag")
        turns[first_human]["value"] = f"{IMAGE_TAG}\n{turns[first_human]['value']}"
    return turns
