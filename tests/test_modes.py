"""The seven generation modes: prompt text, reply checks and the training samples they make."""
from __future__ import annotations

import re

import pytest

from mmgen import modes

MODES = ["vqa_nr", "vqa", "tqa", "descript", "descript_task_desc", "vqa_task_desc", "generic"]
# the demo teacher's pattern (team brief): it must find the reply format in every prompt
TEACHER_PATTERN = re.compile(r'JSON list of (\d+) objects with the keys ((?:"\w+"(?:, )?)+)')
DESCRIPTION = "Spatial reasoning on maps."


@pytest.fixture(scope="module")
def mode_cfgs():
    from conftest import compose_config

    return {name: compose_config([f"mode={name}"]).mode for name in MODES}


def item_for(mode_cfg) -> dict:
    return {key: f"<{key} text>" for key in mode_cfg.reply_keys}


def test_reply_format_is_the_exact_sentence():
    assert (modes.reply_format(["Q", "A"], 3)
            == 'Reply with only a JSON list of 3 objects with the keys "Q", "A".')
    assert modes.reply_format(["A"], 1) == 'Reply with only a JSON list of 1 objects with the keys "A".'


@pytest.mark.parametrize("name", MODES)
def test_every_mode_renders_a_prompt_the_teacher_can_parse(mode_cfgs, name):
    mode_cfg = mode_cfgs[name]
    assert mode_cfg.name == name
    examples = "Example 1:\nQuestion: Refer to the first image. How many?\nAnswer: 4"
    text = modes.render_prompt_text(mode_cfg, DESCRIPTION, 5, examples)
    assert text.count(modes.reply_format(mode_cfg.reply_keys, 5)) == 1
    found = TEACHER_PATTERN.search(text)
    assert found and found.group(1) == "5"
    assert re.findall(r'"(\w+)"', found.group(2)) == list(mode_cfg.reply_keys)
    assert "{" not in text.replace(examples, "")  # every placeholder was filled
    # modes with examples must show them; modes without must not silently carry them
    assert (examples in text) == mode_cfg.uses_icl
    if name != "generic":
        assert "spatial reasoning on maps" in text
    else:
        assert "spatial" not in text.lower()


def test_modes_declare_what_they_send(mode_cfgs):
    with_examples = {name for name, cfg in mode_cfgs.items() if cfg.uses_icl}
    assert with_examples == {"vqa_nr", "vqa", "tqa", "descript"}
    text_only = {name for name, cfg in mode_cfgs.items() if not cfg.uses_candidate_image}
    assert text_only == {"tqa"}
    assert {name: list(cfg.reply_keys) for name, cfg in mode_cfgs.items()} == {
        "vqa_nr": ["Q", "A"], "vqa": ["Q", "R", "A"], "tqa": ["I", "Q", "R", "A"],
        "descript": ["A"], "descript_task_desc": ["A"], "vqa_task_desc": ["Q", "A"],
        "generic": ["A"]}


@pytest.mark.parametrize("name", ["vqa_nr", "vqa_task_desc"])
def test_qa_modes_make_one_image_question_sample(mode_cfgs, name):
    item = {"Q": "Which bar is tallest?", "A": "Cats"}
    assert modes.training_conversations(mode_cfgs[name], item, DESCRIPTION) == [[
        {"from": "human", "value": "<image>\nWhich bar is tallest?"},
        {"from": "gpt", "value": "Cats"}]]


def test_vqa_makes_a_reasoning_sample_and_a_concise_sample(mode_cfgs):
    item = {"Q": "What is the sum?", "R": "3 plus 4 is 7.", "A": "7"}
    reasoning, concise = modes.training_conversations(mode_cfgs["vqa"], item, DESCRIPTION)
    assert reasoning[0]["value"].startswith("<image>\nWhat is the sum?")
    assert "step by step" in reasoning[0]["value"]
    assert "3 plus 4 is 7." in reasoning[1]["value"] and reasoning[1]["value"].endswith("7")
    assert concise[0]["value"].startswith("<image>\nWhat is the sum?")
    assert concise[1]["value"] == "7"


def test_tqa_samples_are_text_only_and_carry_the_imagined_image(mode_cfgs):
    item = {"I": "A pie chart with two slices, 30% and 70%.", "Q": "Which slice is larger?",
            "R": "70 is more than 30.", "A": "The 70% slice"}
    conversations = modes.training_conversations(mode_cfgs["tqa"], item, DESCRIPTION)
    assert len(conversations) == 2
    for human, gpt in conversations:
        assert "<image>" not in human["value"]
        assert item["I"] in human["value"] and item["Q"] in human["value"]
        assert item["A"] in gpt["value"]


@pytest.mark.parametrize("name", ["descript", "descript_task_desc"])
def test_descript_samples_carry_the_expert_instruction_not_describe_the_image(mode_cfgs, name):
    [[human, gpt]] = modes.training_conversations(mode_cfgs[name], {"A": "A map of ..."},
                                                  DESCRIPTION)
    assert human["value"].startswith("<image>\n")
    assert "spatial reasoning on maps" in human["value"]  # built from the dataset description
    assert "expert" in human["value"]
    assert human["value"] != "<image>\nDescribe the image."  # the seed's bug
    assert gpt["value"] == "A map of ..."


def test_generic_asks_to_describe_the_image(mode_cfgs):
    assert modes.training_conversations(mode_cfgs["generic"], {"A": "A photo."}, DESCRIPTION) == [
        [{"from": "human", "value": "<image>\nDescribe the image."},
         {"from": "gpt", "value": "A photo."}]]


def test_validate_items_keeps_only_the_modes_keys(mode_cfgs):
    items = [{"Q": " How many? ", "A": "3", "extra": "dropped"}]
    assert modes.validate_items(mode_cfgs["vqa_nr"], items) == [{"Q": "How many?", "A": "3"}]


@pytest.mark.parametrize("items, message", [
    ([{"Q": "a", "A": "b"}, {"Q": "c"}], 'item 1: missing key "A"'),
    ([{"Q": "a", "A": 7}], 'item 0 key "A": expected a string, got int'),
    ([{"Q": "a", "A": "  "}], 'item 0 key "A": is empty'),
    (["just text"], "item 0: expected an object"),
    ({"Q": "a", "A": "b"}, "expected a JSON list"),
])
def test_validate_items_names_the_item_and_key(mode_cfgs, items, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        modes.validate_items(mode_cfgs["vqa_nr"], items)


def test_a_template_using_an_unknown_key_says_which(mode_cfgs):
    broken = {"samples": [{"human": "<image>\n{Question}", "gpt": "{A}"}]}
    with pytest.raises(ValueError, match=r"\{Question\}"):
        modes.training_conversations(broken, {"Q": "q", "A": "a"}, DESCRIPTION)


def test_task_phrase_lowers_a_capital_but_keeps_acronyms():
    assert modes.task_phrase("Spatial reasoning on maps.") == "spatial reasoning on maps"
    assert modes.task_phrase("AI2D diagram questions") == "AI2D diagram questions"
