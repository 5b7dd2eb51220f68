"""Scorers and cheap checks: the Hugging Face path on a tiny LLaVA built offline, and the rules."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from mmgen.scoring import build_scorer
from mmgen.scoring.checks import answer_in_options, apply_checks, is_number, parse_options
from mmgen.scoring.hf import HFScorer
from mmgen.testing.random_models import save_random_llava, save_random_qwen2_vl


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    return save_random_llava(tmp_path_factory.mktemp("tiny_llava"), size="tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_llava_bytes(tmp_path_factory) -> Path:
    """Byte-level BPE with no prefix space (GPT-2, Llama-3 style) behind a prompt ending ':'."""
    return save_random_llava(tmp_path_factory.mktemp("tiny_llava_bytes"), size="tiny", seed=0,
                             prefix_space=False)


@pytest.fixture(scope="module")
def tiny_qwen2_vl(tmp_path_factory) -> Path:
    return save_random_qwen2_vl(tmp_path_factory.mktemp("tiny_qwen2_vl"), seed=0)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index, size in enumerate([(40, 30), (64, 64), (50, 90)]):
        pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{index}.png")
    return root


def sample(index: int | None, question: str, answer: str) -> dict:
    record = {"id": f"s{index}", "conversations": [
        {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]}
    if index is not None:
        record["image_1"] = f"{index}.png"
    return record


SAMPLES = [sample(0, "What is the value of the tallest bar?", "42"),
           sample(1, "Which slice is the largest?", "Apples have the largest share"),
           sample(None, "How many lines are drawn?", "three"),  # text-only
           sample(2, "Which city lies to the north of the river in this chart, please?", "Oslo")]


# the text each model family trains on after the generation prompt: LLaVA-1.5's
# "ASSISTANT: {answer}</s>" and Qwen's "<|im_start|>assistant\n{answer}<|im_end|>"
TRAINING_REPLY = {"tiny_llava": " {answer}</s>", "tiny_llava_bytes": " {answer}</s>",
                  "tiny_qwen2_vl": "{answer}<|im_end|>"}


def manual_loss(folder: Path, image_root: Path, record: dict, reply: str) -> float:
    """Cross-entropy over what follows the prompt in the whole tokenised text: one unpadded pass,
    the prompt's length counted by the processor itself (image tokens expanded)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    question = record["conversations"][0]["value"].replace("<image>\n", "")
    answer = record["conversations"][1]["value"]
    has_image = "image_1" in record
    content = [{"type": "image"}] * has_image + [{"type": "text", "text": question}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}],
                                           add_generation_prompt=True)
    images = [Image.open(image_root / record["image_1"]).convert("RGB")] if has_image else None
    whole = processor(text=[prompt + reply.format(answer=answer)], images=images,
                      return_tensors="pt")
    prompt_length = processor(text=[prompt], images=images, return_tensors="pt")[
        "input_ids"].shape[1]
    ids = whole["input_ids"][0]
    with torch.no_grad():
        logits = model(**whole).logits[0]
    log_probs = torch.log_softmax(logits[prompt_length - 1:-1].float(), dim=-1)
    targets = ids[prompt_length:]
    return -log_probs[torch.arange(len(targets)), targets].mean().item()


@pytest.mark.parametrize("model_fixture", ["tiny_llava", "tiny_llava_bytes", "tiny_qwen2_vl"])
def test_hf_scorer_loss_is_cross_entropy_over_answer_tokens_only(request, image_root,
                                                                 model_fixture):
    folder = request.getfixturevalue(model_fixture)
    scorer = HFScorer(model=str(folder), device="cpu", batch_size=4)
    losses = scorer.score(SAMPLES, image_root)
    reply = TRAINING_REPLY[model_fixture]
    expected = [manual_loss(folder, image_root, record, reply) for record in SAMPLES]
    assert losses == pytest.approx(expected, abs=1e-5)
    # batching and padding change nothing: one sample at a time gives the same numbers
    single = HFScorer(model=str(folder), device="cpu", batch_size=1).score(SAMPLES, image_root)
    assert single == pytest.approx(losses, abs=1e-5)
    # and the answer matters: a different answer to the same question scores differently
    other = [sample(0, "What is the value of the tallest bar?", "Plums and pears")]
    assert scorer.score(other, image_root)[0] != pytest.approx(losses[0], abs=1e-3)


def test_byte_level_answer_is_scored_as_the_tokens_training_sees(tiny_llava_bytes, image_root):
    """Prompt ending "ASSISTANT:", tokenizer adding no prefix space: alone, "Apples" splits
    into pieces; after the prompt it is the one token "ĠApples", as in a training run."""
    scorer = HFScorer(model=str(tiny_llava_bytes), device="cpu")
    scorer.load()
    tokenizer = scorer.tokenizer
    record = SAMPLES[1]  # "Which slice is the largest?" -> "Apples have the largest share"
    inputs = scorer.encode([record], image_root)
    scored = inputs["labels"][0][inputs["labels"][0] != -100].tolist()
    prompt, whole = scorer.conversation_texts("Which slice is the largest?",
                                              "Apples have the largest share", True)
    assert prompt.endswith("ASSISTANT:") and whole == prompt + " Apples have the largest share</s>"
    joint = tokenizer(whole, add_special_tokens=False)["input_ids"]
    assert scored == joint[len(tokenizer(prompt, add_special_tokens=False)["input_ids"]):]
    assert tokenizer.convert_ids_to_tokens(scored)[:2] == ["ĠApples", "Ġhave"]
    assert scored[-1] == tokenizer.eos_token_id  # end of sequence is scored, as LLaVA trains it
    alone = tokenizer("Apples have the largest share</s>", add_special_tokens=False)["input_ids"]
    assert alone != scored  # what the scorer used to score: "Apples" in pieces


def test_end_of_sequence_is_scored_even_when_the_template_renders_none(tiny_llava):
    """llava-hf's template ends the answer turn with a space and no </s>; training has </s>."""
    scorer = HFScorer(model=str(tiny_llava), device="cpu")
    scorer.load()
    scorer.processor.chat_template = (  # the shape of llava-hf/llava-1.5-7b-hf's template
        "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
        "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
        "{% else %}{{ part['text'] + ' ' }}{% endif %}{% endfor %}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    prompt, whole = scorer.conversation_texts("How many bars?", "Four", True)
    assert prompt == "USER: <image>\nHow many bars? ASSISTANT:"
    assert whole == prompt + " Four</s>"


def test_hf_scorer_by_class_name_and_with_a_lora_adapter(tiny_llava, image_root, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    base = HFScorer(model=str(tiny_llava), model_class="LlavaForConditionalGeneration",
                    device="cpu").score(SAMPLES[:2], image_root)
    assert base == pytest.approx(HFScorer(model=str(tiny_llava), device="cpu").score(
        SAMPLES[:2], image_root), abs=1e-5)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(tmp_path / "adapter")
    adapted = HFScorer(model=str(tiny_llava), adapter=str(tmp_path / "adapter"),
                       device="cpu").score(SAMPLES[:2], image_root)
    assert all(np.isfinite(adapted)) and adapted != pytest.approx(base, abs=1e-4)


def test_scorer_comes_from_config(make_config, tiny_llava):
    cfg = make_config("filter=llava_1_5_7b", f"filter.scorer.model={tiny_llava}",
                      "filter.device=cpu", "filter.batch_size=3")
    scorer = build_scorer(cfg.filter)
    assert isinstance(scorer, HFScorer) and scorer.batch_size == 3 and scorer.device == "cpu"
    assert scorer.name == str(tiny_llava)


def test_unknown_model_class_names_the_key(tiny_llava, image_root):
    scorer = HFScorer(model=str(tiny_llava), model_class="NoSuchModelClass", device="cpu")
    with pytest.raises(ValueError, match="filter.scorer.model_class 'NoSuchModelClass'"):
        scorer.score(SAMPLES[:1], image_root)
    with pytest.raises(ValueError, match="filter.scorer.model is empty"):
        HFScorer(model=None)


# ---------------------------------------------------------------- checkpoint checks


@pytest.fixture
def no_hub(monkeypatch):
    """A hub request fails the test: these checks must decide from the disk and the cache."""
    from huggingface_hub import HfApi

    def refuse(*args, **kwargs):
        raise AssertionError("the check asked the Hugging Face hub")
    monkeypatch.setattr(HfApi, "model_info", refuse)


def text_only_model(folder: Path) -> Path:
    """A folder holding a Llama causal LM's config: a real model type, but not a VLM."""
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model, message", [
    ("/no/such/llava-folder", "folder not found"),
    ("./models/llava", "folder not found"),
    ("~/no-such-models/llava", "folder not found"),
])
def test_a_missing_model_folder_fails_before_any_stage_without_the_network(
        make_config, no_hub, model, message):
    from mmgen.errors import UserError
    from mmgen.scoring import validate

    cfg = make_config("filter=llava_1_5_7b", f"filter.scorer.model='{model}'")
    with pytest.raises(UserError, match=f"filter.scorer.model '{re.escape(model)}': {message}"):
        validate(cfg)


def test_a_hub_shaped_missing_path_is_checked_once_not_retried(make_config, monkeypatch):
    """"models/llava" could be a folder or a hub id: offline, the cache decides; online, one
    request with a short timeout, where from_pretrained would retry for minutes."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    from mmgen.errors import UserError
    from mmgen.scoring import validate

    cfg = make_config("filter=llava_1_5_7b", "filter.scorer.model=models/llava")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(Path(cfg.paths.out_dir) / "hub-cache"))
    with pytest.raises(UserError, match="folder not found, and with HF_HUB_OFFLINE set"):
        validate(cfg)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    requests = []

    def not_found(self, repo_id, timeout=None, **kwargs):
        requests.append((repo_id, timeout))
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # its __init__ wants
        Exception.__init__(error, "404 Repository Not Found")  # an HTTP response, per version
        raise error
    monkeypatch.setattr(HfApi, "model_info", not_found)
    with pytest.raises(UserError, match="no such model on the Hugging Face hub"):
        validate(cfg)
    assert requests == [("models/llava", 10)]


def test_a_text_only_model_is_not_a_vision_language_model(make_config, no_hub, tmp_path):
    from mmgen.errors import UserError
    from mmgen.scoring import validate

    folder = text_only_model(tmp_path / "tiny_llama")
    cfg = make_config("filter=llava_1_5_7b", f"filter.scorer.model={folder}")
    with pytest.raises(UserError, match=r"not a vision-language model \(config class "
                                        r"LlamaConfig\); use one of .*llava.*qwen2_vl"):
        validate(cfg)
    (tmp_path / "empty").mkdir()
    cfg = make_config("filter=llava_1_5_7b", f"filter.scorer.model={tmp_path / 'empty'}")
    with pytest.raises(UserError, match="has no config.json"):
        validate(cfg)


@pytest.mark.parametrize("model_fixture, option", [("tiny_llava", "llava_1_5_7b"),
                                                   ("tiny_qwen2_vl", "qwen2_vl_2b")])
def test_a_hf_folder_given_to_the_demo_scorer_names_the_filter_option(
        request, make_config, no_hub, model_fixture, option):
    from mmgen.errors import UserError
    from mmgen.scoring import validate

    folder = request.getfixturevalue(model_fixture)
    cfg = make_config(f"filter.scorer.model={folder}")  # filter=default: the demo scorer
    with pytest.raises(UserError, match=f"did you mean `filter={option}`"):
        validate(cfg)
    validate(make_config(f"filter={option}", f"filter.scorer.model={folder}"))  # the fix works


def test_the_demo_scorer_wants_a_checkpoint_file(make_config, tmp_path):
    from mmgen.errors import UserError
    from mmgen.scoring import validate

    with pytest.raises(UserError, match="demo target model checkpoint not found"):
        validate(make_config(f"filter.scorer.model={tmp_path / 'model.pt'}"))
    with pytest.raises(UserError, match="is a folder without config.json"):
        validate(make_config(f"filter.scorer.model={tmp_path}"))
    validate(make_config())  # null: the committed demo model


def test_bad_class_and_adapter_are_named(make_config, no_hub, tiny_llava, tmp_path):
    from mmgen.errors import UserError
    from mmgen.scoring import validate

    base = ("filter=llava_1_5_7b", f"filter.scorer.model={tiny_llava}")
    with pytest.raises(UserError, match="filter.scorer.model_class 'NoSuchModelClass'"):
        validate(make_config(*base, "+filter.scorer.model_class=NoSuchModelClass"))
    with pytest.raises(UserError, match="filter.scorer.adapter '/no/adapter': folder not found"):
        validate(make_config(*base, "filter.scorer.adapter=/no/adapter"))
    with pytest.raises(UserError, match="has no adapter_config.json"):
        validate(make_config(*base, f"filter.scorer.adapter={tmp_path}"))


def test_a_run_that_never_scored_leaves_no_partial_file(make_config, tmp_path, image_root):
    """The model fails to load: no header-only .partial is left to look like progress."""
    from mmgen import filter as filter_stage
    from mmgen.contracts import write_dataset

    out = tmp_path / "out"
    write_dataset(out / "data.json", {"image_folder": str(image_root), "samples": SAMPLES})
    cfg = make_config("filter=llava_1_5_7b", f"filter.scorer.model={tmp_path / 'gone'}",
                      "filter.device=cpu", out_dir=out)
    with pytest.raises(ValueError, match="folder not found"):
        filter_stage.score_shard(cfg, SAMPLES, 0, 1)
    assert sorted(p.name for p in out.iterdir()) == ["data.json"]


# ---------------------------------------------------------------- cheap checks

AI2D_QUESTION = ("<image> From the above food web diagram, name all the secondary consumer\n"
                 "Options: A. copepods\nB. plants\nC. microzooplankton\nD. none\n")
SPATIAL_QUESTION = ("Q3: How many objects are in the Northeast of The Roaring Roastery? "
                    "Options for Q3: [5, 3, 2, 0]. ")


@pytest.mark.parametrize("question, answer, ok", [
    (AI2D_QUESTION, "A. copepods", True), (AI2D_QUESTION, "B", True),
    (AI2D_QUESTION, "microzooplankton", True), (AI2D_QUESTION, "A. plants", False),
    (AI2D_QUESTION, "E. sharks", False), (SPATIAL_QUESTION, "A3. 0", True),
    (SPATIAL_QUESTION, "A3. 7", False),
    ("Which is largest? Choices: Apples, Pears or Plums", "Pears", True),
    ("Which is largest? Choices: Apples, Pears or Plums", "Kiwis", False),
])
def test_multiple_choice_answer_must_be_an_option(question, answer, ok):
    options = parse_options(question)
    assert options and answer_in_options(answer, options) is ok


@pytest.mark.parametrize("answer, ok", [
    ("42", True), ("3.5%", True), ("$1,200", True), ("1,200.5 tons", True), ("-3", True),
    ("twelve", True), ("12 million people", True), ("about 40", False), ("40 or 50", False),
    ("The chart shows many", False)])
def test_numeric_answer_must_parse(answer, ok):
    assert is_number(answer) is ok


def test_checks_remove_repeats_and_misformats_per_image():
    from mmgen.schema.curation import ChecksConfig

    checks = OmegaConf.structured(ChecksConfig())
    cases = [(0, "What is the sum of Apples and Pears?", "12", None),
             (0, "what is the SUM of apples and pears", "12", "duplicate_exact"),
             (0, "What is the sum of Pears and Apples?", "12", "duplicate_near"),
             (0, "What is the sum of Apples and Plums?", "15", None),  # another question
             (1, "What is the sum of Apples and Pears?", "12", None),  # another image
             (1, "How many bars are there?", "lots", "numeric"),
             (1, "Pick one. Options: A. red B. blue", "green", "choice"),
             (2, "Hi", "x", "length")]  # question under 3 characters
    records = [dict(sample(image, question, answer), id=f"r{i}")
               for i, (image, question, answer, _) in enumerate(cases)]
    kept, removed = apply_checks(records, checks)
    assert removed == {f"r{i}": rule for i, (*_, rule) in enumerate(cases) if rule}
    assert [r["id"] for r in kept] == [f"r{i}" for i, (*_, rule) in enumerate(cases) if not rule]


def test_reasoning_samples_are_checked_on_their_final_answer():
    """Mode vqa's reasoning sample answers "<steps>\nAnswer: <A>": the steps are not the answer."""
    from mmgen.schema.curation import ChecksConfig

    checks = OmegaConf.structured(ChecksConfig())
    steps = "Hiking is 92 and Art is 60. 92 + 60 = 152."
    think = "\nThink it through step by step, then give the answer."
    cases = [(0, "What is the sum of Hiking and Art?" + think, f"{steps}\nAnswer: 152", None),
             (1, "How many bars are there?" + think, "I count them one by one.\nAnswer: lots",
              "numeric"),
             (2, "Pick one. Options: A. red B. blue" + think, "The bar is blue.\nAnswer: B", None),
             (3, "Pick one. Options: A. red B. blue" + think, "It looks green.\nAnswer: green",
              "choice")]
    records = [dict(sample(image, question, answer), id=f"r{i}")
               for i, (image, question, answer, _) in enumerate(cases)]
    _, removed = apply_checks(records, checks)
    assert removed == {f"r{i}": rule for i, (*_, rule) in enumerate(cases) if rule}


def test_demo_scorer_sees_a_16bit_image_as_its_8bit_twin_not_as_white(tmp_path):
    from mmgen.demo.scorer import DemoTargetScorer

    bars = np.full((64, 64), 1.0)
    bars[20:, 8:20], bars[40:, 26:38], bars[10:, 44:56] = 0.2, 0.5, 0.0  # three dark bars
    Image.fromarray((bars * 255).astype(np.uint8)).save(tmp_path / "bars8.png")
    Image.fromarray((bars * 65535).astype(np.uint16)).save(tmp_path / "bars16.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "white.png")
    samples = [{**sample(None, "Which bar is the tallest?", "the third"), "image_1": name}
               for name in ("bars8.png", "bars16.png", "white.png")]
    eight, sixteen, white = DemoTargetScorer(device="cpu").score(samples, tmp_path)
    assert sixteen == pytest.approx(eight, abs=1e-4)
    assert abs(sixteen - white) > 1e-3
