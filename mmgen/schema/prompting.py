"""Schemas for prompt building: mode and icl."""
from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class ModeConfig:
    name: str = MISSING  # vqa_nr | vqa | tqa | descript | descript_task_desc | vqa_task_desc | generic
    system: str = MISSING  # system message template
    instruction: str = MISSING  # user instruction template
    reply_keys: list[str] = field(default_factory=list)  # keys every reply item must carry
    uses_icl: bool = True  # whether in-context examples are sent
    uses_candidate_image: bool = True  # whether the candidate image is sent


@dataclass
class IclConfig:
    num_examples: int = 1  # in-context examples per prompt, drawn from the prompt's subgroup
