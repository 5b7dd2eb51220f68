"""Stage 3, prompts: one prompt per generation request, written to <out_dir>/prompts.jsonl.

Subgroup s gets ceil(total_gen * |ref_s| / |ref| / min_gen_per_candidate) prompts. Each prompt
takes icl.num_examples reference samples of its own subgroup and one candidate image; both are
drawn from decks that are reshuffled after each full pass, so every example and candidate is
used about equally. Every random choice is seeded from `seed` and the subgroup, so the same
config gives the same bytes.
"""
from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mmgen import CONF_DIR, modes, runner
from mmgen.contracts import ContractError, load_task, sample_image_path, write_prompts
from mmgen.stage import launch, out_dir

log = logging.getLogger(__name__)

IMAGE_TAG = re.compile(r"<image>", re.IGNORECASE)
# tags that mean something to a model's chat template but nothing to the teacher
SPECIAL_TAG = re.compile(
    r"<\|[^<>|]*\|>|</?(?:image|img|video|audio)(?:[ _]?\d+)?>|</?s>|<unk>|<pad>", re.IGNORECASE
)
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth"]
REFERENCE_MARK = "\x00"  # stands for the "Refer to the ... image." sentence until it is known
EXAMPLES_MARK = "\x01"  # stands for the examples in the pre-rendered instruction
MISSING_SHOWN = 5  # missing image paths quoted in the error
CUT_MARK = " [...]"  # ends an in-context turn cut at icl.max_turn_chars


def image_reference(position: int) -> str:
    """The sentence that points an example at its image: position 1 -> "Refer to the first image."."""
    if position <= len(ORDINALS):
        return f"Refer to the {ORDINALS[position - 1]} image."
    return f"Refer to image {position}."


def cut_turn(text: str, max_chars: int) -> str:
    """`text` cut to its first `max_chars` characters (ending in CUT_MARK) when longer."""
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + CUT_MARK


def example_dialogue(sample: dict, max_chars: int | None = None) -> str:
    """A reference sample's turns as text, its first <image> tag marked, other tags removed;
    each turn cut to `max_chars` characters (icl.max_turn_chars)."""
    lines, marked = [], False
    for turn in sample["conversations"]:
        if turn["from"] not in ("human", "gpt"):
            continue
        text = cut_turn(turn["value"], max_chars) if max_chars else turn["value"]
        if not marked and IMAGE_TAG.search(text):
            text, marked = IMAGE_TAG.sub(f" {REFERENCE_MARK} ", text, count=1), True
        text = SPECIAL_TAG.sub(" ", text)
        text = "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines())
        text = text.strip()
        if not marked and turn["from"] == "human":  # no tag at all: still say which image
            text, marked = f"{REFERENCE_MARK} {text}", True
        lines.append(("Question: " if turn["from"] == "human" else "Answer: ") + text)
    return "\n".join(lines)


def allocate(task: dict, total_gen: int, per_prompt: int) -> list[int]:
    """Prompts per subgroup: ceil(total_gen * |ref_s| / |ref| / per_prompt), in integers."""
    sizes = [len(group["reference_sample_idx"]) for group in task["subgroups"]]
    total = sum(sizes)
    if total == 0:
        raise ValueError("task file: no subgroup has reference samples; nothing to allocate")
    return [-(-total_gen * size // (total * per_prompt)) for size in sizes]


class Deck:
    """Draws items without replacement; reshuffles all of them when the deck runs out."""

    def __init__(self, items: list, rng: random.Random):
        self.items, self.rng, self.remaining = list(items), rng, []

    def draw(self, count: int, distinct: bool = True) -> list:
        chosen: list = []
        while len(chosen) < count:
            if not self.remaining:
                self.remaining = list(self.items)
                self.rng.shuffle(self.remaining)
                if distinct and chosen:  # this prompt's picks go to the bottom of the new deck
                    self.remaining.sort(key=lambda item: item not in chosen)
            chosen.append(self.remaining.pop())
        return chosen


@dataclass
class Planned:
    """One prompt's choices, before any text is rendered."""

    prompt_id: str
    group_index: int
    icl_indices: list[int]
    candidate: int | None  # index into the subgroup's candidate_image_paths


def keyword_slug(keyword: str) -> str:
    """'bar chart' -> 'bar-chart': the stem of a prompt id."""
    return re.sub(r"[^a-z0-9]+", "-", keyword.lower()).strip("-") or "subgroup"


def check_task(cfg: DictConfig, task: dict, allocation: list[int], task_path) -> None:
    """Fail before writing anything when a subgroup cannot supply examples or candidates."""
    num_examples = cfg.icl.num_examples if cfg.mode.uses_icl else 0
    for index, (group, count) in enumerate(zip(task["subgroups"], allocation)):
        where = f"subgroup {index} ('{group['keyword']}')"
        references = len(group["reference_sample_idx"])
        if count and num_examples > references and not cfg.icl.with_replacement:
            raise ContractError(task_path, where, (
                f"only {references} reference samples, fewer than the icl.num_examples="
                f"{num_examples} drawn per prompt without replacement; lower icl, or set "
                "icl.with_replacement=true to let prompts repeat examples"))
        if count and cfg.mode.uses_candidate_image and not group.get("candidate_image_paths"):
            raise ContractError(task_path, where, (
                f"no candidate images (candidate_image_paths is empty), yet {count} prompts "
                "need one; rerun retrieval, or remove the subgroup from the task file"))


def plan(cfg: DictConfig, task: dict, allocation: list[int]) -> Iterator[Planned]:
    """Every prompt's id, examples and candidate, in file order; deterministic given `seed`."""
    num_examples = cfg.icl.num_examples if cfg.mode.uses_icl else 0
    uses_candidate_image = cfg.mode.uses_candidate_image
    slugs: dict[str, int] = {}
    for index, (group, count) in enumerate(zip(task["subgroups"], allocation)):
        slug = keyword_slug(group["keyword"])
        slugs[slug] = slugs.get(slug, 0) + 1
        if slugs[slug] > 1:  # two subgroups with the same keyword still get distinct ids
            slug = f"{slug}-{slugs[slug]}"
        seed = f"{cfg.seed}/{index}/{group['keyword']}"
        examples = Deck(group["reference_sample_idx"], random.Random(seed + "/examples"))
        candidates = Deck(range(len(group.get("candidate_image_paths", []))),
                          random.Random(seed + "/candidates"))
        distinct = num_examples <= len(group["reference_sample_idx"])
        for number in range(count):
            icl_indices = examples.draw(num_examples, distinct) if num_examples else []
            candidate = candidates.draw(1)[0] if uses_candidate_image else None
            yield Planned(f"{slug}-{number:06d}", index, icl_indices, candidate)


def check_images(cfg: DictConfig, task: dict, allocation: list[int]) -> int:
    """Raise FileNotFoundError, with a count and the first paths, if a used image is missing."""
    root = Path(cfg.dataset.root)
    example_images = [sample_image_path(task, sample) for sample in task["samples"]]
    used: dict[str, None] = {}  # ordered set: the error quotes paths in file order
    for planned in plan(cfg, task, allocation):
        group = task["subgroups"][planned.group_index]
        for sample_index in planned.icl_indices:
            used.setdefault(example_images[sample_index])
        if planned.candidate is not None:
            used.setdefault(group["candidate_image_paths"][planned.candidate])
    missing = [path for path in used if not (root / path).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(used)} images the prompts use are missing under "
            f"dataset.root '{root}', e.g. {', '.join(missing[:MISSING_SHOWN])}. Fix dataset.root "
            "or the task file's paths, or set check_images=false to skip this check.")
    return len(used)


def warn_if_cut(sample: dict, sample_index: int, max_chars: int) -> None:
    """Log which of a reference sample's turns are too long to go whole into prompts."""
    lengths = [len(turn["value"]) for turn in sample["conversations"]
               if turn["from"] in ("human", "gpt") and len(turn["value"]) > max_chars]
    if lengths:
        log.warning("prompts: reference sample %d%s has %s of %s characters; cut to "
                    "icl.max_turn_chars=%d in every prompt that shows it", sample_index,
                    f" (id {sample['id']})" if "id" in sample else "",
                    "a turn" if len(lengths) == 1 else f"{len(lengths)} turns",
                    " and ".join(f"{length:,}" for length in lengths), max_chars)


def build_records(cfg: DictConfig, task: dict, allocation: list[int]) -> Iterator[dict]:
    """Prompt records in file order (see DESIGN.md "Data contracts")."""
    dialogues: dict[int, str] = {}
    mode = OmegaConf.to_container(cfg.mode, resolve=True)  # plain dict: fast in the hot loop
    # the instruction is the same for every prompt but for its examples: render it once
    instruction = modes.render_prompt_text(mode, cfg.dataset.description,
                                           cfg.min_gen_per_candidate, EXAMPLES_MARK)
    example_images = [sample_image_path(task, sample) for sample in task["samples"]]
    for planned in plan(cfg, task, allocation):
        group = task["subgroups"][planned.group_index]
        examples, images = [], []
        for position, sample_index in enumerate(planned.icl_indices, start=1):
            if sample_index not in dialogues:
                sample = task["samples"][sample_index]
                warn_if_cut(sample, sample_index, cfg.icl.max_turn_chars)
                dialogues[sample_index] = example_dialogue(sample, cfg.icl.max_turn_chars)
            dialogue = dialogues[sample_index].replace(REFERENCE_MARK, image_reference(position))
            examples.append(mode["example"].format(number=position, dialogue=dialogue))
            images.append(example_images[sample_index])
        candidate, score = None, None
        if planned.candidate is not None:
            candidate = group["candidate_image_paths"][planned.candidate]
            scores = group.get("candidate_scores")
            score = scores[planned.candidate] if scores else None
            images.append(candidate)
        text = instruction.replace(EXAMPLES_MARK, "\n\n".join(examples))
        yield {
            "id": planned.prompt_id,
            "keyword": group["keyword"],
            "icl_indices": planned.icl_indices,
            "system": mode["system"],
            "content": [{"type": "text", "text": text}]
            + [{"type": "image", "path": path} for path in images],
            "candidate_image": candidate,
            "candidate_score": score,
        }


def load_stage_task(cfg: DictConfig) -> tuple[dict, Path]:
    """The retrieve stage's <out_dir>/task.json (subgroups with their candidates)."""
    task_path = out_dir(cfg) / "task.json"
    task = load_task(task_path)
    if task["dataset_description"].strip() != cfg.dataset.description.strip():
        log.info("%s describes the task as %r; the prompts use dataset.description %r",
                 task_path, task["dataset_description"], cfg.dataset.description)
    return task, task_path


def run(cfg: DictConfig) -> Path:
    """Bring <out_dir>/prompts.jsonl up to date; returns out_dir."""
    return runner.run(cfg, "prompts")


def compute(cfg: DictConfig, work_dir: Path) -> dict:
    """Write prompts.jsonl into work_dir: one request per line, allocated over the subgroups."""
    task, task_path = load_stage_task(cfg)
    allocation = allocate(task, cfg.total_gen, cfg.min_gen_per_candidate)
    check_task(cfg, task, allocation, task_path)
    images = check_images(cfg, task, allocation) if cfg.check_images else None
    records = tqdm(build_records(cfg, task, allocation), total=sum(allocation),
                   desc="prompts", unit="prompt", mininterval=2.0)
    count = write_prompts(work_dir / "prompts.jsonl", records)
    log.info("prompts: wrote %d prompts (%s)", count, ", ".join(
        f"{group['keyword']}: {n}" for group, n in zip(task["subgroups"], allocation)))
    return {"prompts": count, "mode": cfg.mode.name, "num_examples": cfg.icl.num_examples
            if cfg.mode.uses_icl else 0, "images_checked": images,
            "by_keyword": {g["keyword"]: n for g, n in zip(task["subgroups"], allocation)}}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
