"""Schemas for prompt building: mode and icl."""
from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class SampleTemplate:
    # One training sample made from each valid reply item. Placeholders: the item's keys
    # ({Q}, {A}, {R}, {I}) and {description} (dataset.description, trailing period dropped).
    # Start `human` with "<image>\n" for samples that carry the candidate image.
    human: str = MISSING  # text of the human turn
    gpt: str = MISSING  # text of the answer turn


@dataclass
class ModeConfig:
    name: str = MISSING  # vqa_nr | vqa | tqa | descript | descript_task_desc | vqa_task_desc | generic
    system: str = MISSING  # system message sent with every prompt
    # user instruction; placeholders {description}, {n} (items asked per prompt) and {examples}
    # (the in-context examples, empty when uses_icl is false). The reply-format sentence
    # (mmgen.modes.reply_format) is always appended after it.
    instruction: str = MISSING
    reply_keys: list[str] = MISSING  # keys every reply item must carry
    uses_icl: bool = MISSING  # whether in-context examples (text + images) are sent
    uses_candidate_image: bool = MISSING  # whether the candidate image is sent (false: text only)
    # how one example is written into {examples}; {number} is 1-based, {dialogue} its Q/A turns
    example: str = "Example {number}:\n{dialogue}"
    samples: list[SampleTemplate] = MISSING  # training samples per item


@dataclass
class IclConfig:
    num_examples: int = MISSING  # in-context examples per prompt, drawn from the prompt's subgroup
    # false: a subgroup with fewer references than num_examples is an error;
    # true: such prompts repeat examples (only then; otherwise draws stay without replacement)
    with_replacement: bool = MISSING
    max_turn_chars: int = MISSING  # longest in-context question or answer sent, in characters

