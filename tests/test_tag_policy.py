"""One <image> tag per image, leading the first human turn: the teacher may not write special
tokens (its reply goes back for a fix, then fails as `parse`), and sample templates are
normalised where items become samples (mmgen/modes.py)."""
from __future__ import annotations

import json

import pytest

from mmgen import generate, modes
from mmgen.contracts import load_dataset, read_log, write_prompts
from mmgen.testing.stub_server import StubServer

QUESTION = "What is the largest value in the chart?"


def one_prompt(image: str) -> dict:
    """A prompts.jsonl record asking for one Q/A about `image`."""
    return {"id": "bar-chart-000000", "keyword": "bar chart", "icl_indices": [0],
            "system": "You write training data.",
            "content": [{"type": "text", "text": "Write 1 question. "
                         + modes.reply_format(["Q", "A"], 1)},
                        {"type": "image", "path": image}],
            "candidate_image": image, "candidate_score": 0.5}


def generate_with(answer, make_config, root, out):
    """Run the generate stage's compute against a stub teacher answering with `answer`."""
    with StubServer(answer=answer) as server:
        cfg = make_config(f"dataset.root={root}", "mode=vqa_nr", "generate.progress=false",
                          "backend=compatible", f"backend.base_url={server.base_url}",
                          "backend.model=gpt-4o", "generate.backoff_base_s=0.01", out_dir=out)
        image = min(p.relative_to(root).as_posix() for p in (root / "pool").iterdir())
        write_prompts(out / "prompts.jsonl", [one_prompt(image)])
        generate.compute(cfg, out)
        return server.requests


def test_a_teacher_answer_with_an_image_tag_goes_back_and_never_doubles_the_tag(
        make_config, curation_demo_root, tmp_path):
    def tagged_then_fixed(body: dict) -> str:
        fixed = len(body["messages"]) > 2  # the format-fixing call carries the bad reply
        return json.dumps([{"Q": QUESTION, "A": "42" if fixed else "<image> The bar says 42"}])

    out = tmp_path / "out"
    requests = generate_with(tagged_then_fixed, make_config, curation_demo_root, out)
    fix_request = requests[-1]["messages"][-1]["content"]
    assert 'item 0 key "A": contains \'<image>\'' in fix_request
    [sample] = load_dataset(out / "data.json")["samples"]
    assert sample["conversations"] == [{"from": "human", "value": f"<image>\n{QUESTION}"},
                                       {"from": "gpt", "value": "42"}]


def test_a_teacher_that_keeps_writing_special_tokens_fails_as_parse(
        make_config, curation_demo_root, tmp_path):
    out = tmp_path / "out"
    always = json.dumps([{"Q": f"<|image_pad|> {QUESTION}", "A": "42</s>"}])
    generate_with(lambda body: always, make_config, curation_demo_root, out)
    [record] = read_log(out / "generations.jsonl")
    assert (record["status"], record["error_class"]) == ("failed", "parse")
    assert load_dataset(out / "data.json")["samples"] == []


@pytest.mark.parametrize("human, has_image, expected", [
    ("<image>\nHow many bars?", True, "<image>\nHow many bars?"),  # already right: unchanged
    ("How many bars?", True, "<image>\nHow many bars?"),  # a template without the tag
    ("How many bars?\n<image>", True, "<image>\nHow many bars?"),  # trailing: moved to lead
    ("<image>\nHow many bars?", False, "How many bars?"),  # text-only (tqa): no tag at all
])
def test_place_image_tag_leaves_one_tag_per_image_at_the_front(human, has_image, expected):
    conversation = [{"from": "human", "value": human},
                    {"from": "gpt", "value": "<image>\nThree"}]
    assert modes.place_image_tag(conversation, has_image) == [
        {"from": "human", "value": expected}, {"from": "gpt", "value": "Three"}]
    assert conversation[0]["value"] == human  # the input is not changed


@pytest.mark.parametrize("text", ["<image>", "<Image>", "<video>", "<|im_end|>",
                                  "<|vision_start|>", "</s>", "<s>", "<img>", "<image_1>"])
def test_validate_items_refuses_special_tokens_and_names_the_key(text):
    mode = {"reply_keys": ["Q", "A"]}
    with pytest.raises(ValueError, match=f'item 1 key "A": contains {text!r}'):
        modes.validate_items(mode, [{"Q": "How many?", "A": "3"},
                                    {"Q": "How many?", "A": f"{text} 3"}])
    assert modes.validate_items(mode, [{"Q": "Is 3 < 5?", "A": "yes, 3 < 5 and 5 > 3"}])
