"""The hf evaluation backend on the tiny LLaVA and Qwen2-VL models built offline, with and
without a LoRA adapter in train/."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers.eval_data import write_eval_set

from mmgen import evaluate
from mmgen.contracts import iter_jsonl, read_json
from mmgen.errors import UserError
from mmgen.evaluation import Question
from mmgen.evaluation.hf import HFEvaluator
from mmgen.testing.random_models import save_random_llava, save_random_qwen2_vl


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    return save_random_llava(tmp_path_factory.mktemp("tiny_llava"), size="tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_qwen2_vl(tmp_path_factory) -> Path:
    return save_random_qwen2_vl(tmp_path_factory.mktemp("tiny_qwen2_vl"), seed=0)


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_root")
    write_eval_set(root)
    return root


QUESTIONS = [Question("a", "What is the value of Paris?", "img/q0.png"),
             Question("b", "Which slice of the pie chart is the largest one of all?", "img/q1.png"),
             Question("c", "How many lines?", "img/q2.png"),
             Question("d", "How many lines are drawn in the plot?", None)]  # text-only


def answers(model: Path, root: Path, batch_size: int, **settings) -> dict[str, str]:
    collected: dict[str, str] = {}
    evaluator = HFEvaluator(model=str(model), device="cpu", batch_size=batch_size,
                            max_new_tokens=6, **settings)
    evaluator.predict(QUESTIONS, root, lambda q, text: collected.__setitem__(q.id, text))
    return collected


@pytest.mark.parametrize("model_fixture", ["tiny_llava", "tiny_qwen2_vl"])
def test_batched_greedy_answers_equal_one_at_a_time(request, eval_root, model_fixture):
    model = request.getfixturevalue(model_fixture)
    batched = answers(model, eval_root, batch_size=3)
    assert set(batched) == {"a", "b", "c", "d"}
    # left padding: a prompt's answer does not depend on the longer prompts beside it
    assert batched == answers(model, eval_root, batch_size=1)
    # the answer is only the generated tokens, never the prompt
    assert not any("USER" in text or "Paris?" in text or "<|im_start|>" in text
                   for text in batched.values())


def test_evaluate_runs_with_the_trained_lora_adapter(make_config, tiny_llava, eval_root,
                                                    tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    cfg = make_config("evaluate=hf", f"evaluate.backend.model={tiny_llava}",
                      f"dataset.root={eval_root}", "dataset.eval=eval.json", "evaluate.device=cpu",
                      "evaluate.max_new_tokens=6", "evaluate.progress=false", out_dir=tmp_path)
    with pytest.raises(UserError, match="train/adapter_config.json not found"):
        evaluate.compute(cfg, tmp_path)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(tmp_path / "train")
    trained = evaluate.compute(cfg, tmp_path)
    base = evaluate.compute_base(cfg, tmp_path)
    assert trained["evaluated"] == "trained" and trained["count"] == 8
    assert trained["model"] == f"{tiny_llava}+{tmp_path / 'train'}"
    assert read_json(tmp_path / "eval" / "metrics.json")["splits"]["human"]["count"] == 3
    trained_answers = [r["prediction"] for r in iter_jsonl(tmp_path / "eval/predictions.jsonl")]
    base_answers = [r["prediction"] for r in iter_jsonl(tmp_path / "eval_base/predictions.jsonl")]
    assert trained_answers != base_answers  # the adapter was applied
    assert base["evaluated"] == "base"


def test_merged_adapter_answers_as_base_plus_adapter(tiny_llava, eval_root, tmp_path):
    """The folder lmms-eval would load gives the answers evaluate gives with the adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    from mmgen.evaluation.merge import main as merge_main

    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(tmp_path / "train")
    assert merge_main([str(tmp_path / "train"), str(tmp_path / "merged"), "--dtype",
                       "float32"]) == 0  # the base model comes from adapter_config.json
    with_adapter = answers(tiny_llava, eval_root, batch_size=4, trained=str(tmp_path / "train"))
    assert answers(tmp_path / "merged", eval_root, batch_size=4) == with_adapter
    assert with_adapter != answers(tiny_llava, eval_root, batch_size=4)
    with pytest.raises(SystemExit):
        merge_main([str(tmp_path / "merged"), str(tmp_path / "again")])  # no adapter there
