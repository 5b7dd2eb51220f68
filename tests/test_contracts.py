"""Data contracts: seed-format task files load and round-trip; bad input names file/record/field."""
import copy
import json
from pathlib import Path

import pytest
from helpers.seed_files import seed_task_file

from mmgen import contracts
from mmgen.contracts import ContractError

# ours (tests/data: human/gpt, then user/assistant), then the seed's (MMGEN_SEED_REFERENCE_DIR)
SEED_TASK_FILES = ["diagram_task_file.json", "map_task_file.json",
                   "ai2d_task_file.json", "spatial_map_task_file.json"]
SEED_ROLES = {"user": "human", "assistant": "gpt"}


def small_task() -> dict:
    return {
        "image_folder": "images",
        "dataset_description": "chart question answering",
        "samples": [
            {"id": "a", "image_1": "a.png", "conversations": [
                {"from": "user", "value": "<image>\nWhat is the top bar?"},
                {"from": "assistant", "value": "Sales"}]},
            {"id": "b", "image_1": "b.png", "conversations": [
                {"from": "human", "value": "<image>\nHow many slices?"},
                {"from": "gpt", "value": "4"}]},
        ],
        "subgroups": [{"keyword": "bar chart", "reference_sample_idx": [0, 1],
                       "candidate_image_paths": ["pool/x.png"]}],
    }


def write(tmp_path: Path, data, name="task.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def with_human_gpt_roles(task: dict) -> dict:
    """The task with user/assistant spelled human/gpt, and nothing else changed."""
    spelled = copy.deepcopy(task)
    for sample in spelled["samples"]:
        for turn in sample["conversations"]:
            turn["from"] = SEED_ROLES.get(turn["from"], turn["from"])
    return spelled


@pytest.mark.parametrize("name", SEED_TASK_FILES)
def test_seed_task_files_round_trip_unchanged_in_meaning(name, tmp_path):
    task_path = seed_task_file(name)
    original = json.loads(task_path.read_text())
    task = contracts.load_task(task_path)
    contracts.write_task(tmp_path / "copy.json", task)
    reloaded = json.loads((tmp_path / "copy.json").read_text())
    assert reloaded == with_human_gpt_roles(original)  # only the roles' spelling may change
    assert list(reloaded) == list(original)  # keys keep the seed's order
    assert len(task["samples"]) == len(original["samples"])
    assert task["subgroups"][0]["candidate_image_paths"] == \
        original["subgroups"][0]["candidate_image_paths"]


def test_user_assistant_roles_normalise_to_human_gpt(tmp_path):
    task = contracts.load_task(write(tmp_path, small_task()))
    assert [t["from"] for t in task["samples"][0]["conversations"]] == ["human", "gpt"]
    assert contracts.question_and_answer(task["samples"][0]) == ("<image>\nWhat is the top bar?", "Sales")
    assert contracts.sample_image_path(task, task["samples"][0]) == "images/a.png"


def mutate(change):
    data = small_task()
    change(data)
    return data


BAD_INPUTS = {
    "missing key": (lambda d: d["samples"][1].pop("conversations"),
                    ["sample 1", "missing key 'conversations'"]),
    "wrong type": (lambda d: d["samples"][0].update(image_1=7),
                   ["sample 0 field 'image_1'", "expected str, got int"]),
    "empty samples": (lambda d: d.update(samples=[]), ["field 'samples'", "is empty"]),
    "no answer turn": (lambda d: d["samples"][1]["conversations"].pop(),
                       ["sample 1 field 'conversations'", "no answer turn"]),
    "duplicate id": (lambda d: d["samples"][1].update(id="a"),
                     ["sample 1 field 'id'", "duplicate id 'a'"]),
    "index out of range": (lambda d: d["subgroups"][0]["reference_sample_idx"].append(5),
                           ["subgroup 0 ('bar chart')", "reference_sample_idx[2]", "index 5"]),
    "path escapes folder": (lambda d: d["samples"][0].update(image_1="../secret.png"),
                            ["sample 0 field 'image_1'", "escapes its folder"]),
    "candidate escapes folder": (
        lambda d: d["subgroups"][0]["candidate_image_paths"].append("/etc/passwd"),
        ["candidate_image_paths[1]", "escapes its folder"]),
    "unknown role": (lambda d: d["samples"][0]["conversations"][0].update({"from": "bot"}),
                     ["sample 0 conversations[0] field 'from'", "unknown role 'bot'"]),
    "answer without question": (lambda d: d["samples"][1]["conversations"].pop(0),
                                ["sample 1 field 'conversations'", "answer but no question"]),
    "question is only the image tag": (
        lambda d: d["samples"][0]["conversations"][0].update(value="<image>\n"),
        ["sample 0 field 'conversations'", "answer but no question"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_task_file_error_names_file_record_field(case, tmp_path):
    change, expected_parts = BAD_INPUTS[case]
    path = write(tmp_path, mutate(change), name="bad_task.json")
    with pytest.raises(ContractError) as caught:
        contracts.load_task(path)
    message = str(caught.value)
    assert str(path) in message
    for part in expected_parts:
        assert part in message


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"image_folder": "x",\n "samples": [,]}')
    with pytest.raises(ContractError, match=r"broken.json: line 2 column \d+: invalid JSON"):
        contracts.load_reference(path)


def test_non_utf8_reference_names_the_file_and_byte_offset(tmp_path):
    path = tmp_path / "reference.json"
    text = json.dumps(small_task(), indent=1).replace("Sales", "Caf\u00e9 sales")
    path.write_bytes(text.encode("latin-1"))  # a file saved by an editor in Latin-1
    offset = text.encode("latin-1").index(b"\xe9")
    line = text[:text.index("\u00e9")].count("\n") + 1
    with pytest.raises(ContractError, match=rf"reference.json: byte offset {offset} \(line {line} "
                                            r"column \d+\): is not UTF-8 \(byte 0xe9.*save the file"):
        contracts.load_reference(path)


def test_non_utf8_jsonl_line_names_the_byte_offset(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(ContractError, match=r"prompts.jsonl: line 2 byte offset 16: is not UTF-8"):
        list(contracts.iter_jsonl(path))


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "reference.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(small_task()).encode())
    assert len(contracts.load_reference(path)["samples"]) == 2


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "data.json"
    contracts.write_json(path, {"version": 1})

    def exploding_records():
        yield {"ok": True}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        contracts.write_jsonl(path, exploding_records())
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]  # no temp file left behind


def test_append_log_tolerates_and_repairs_torn_last_line(tmp_path):
    path = tmp_path / "generations.jsonl"
    with contracts.AppendLog(path) as log:
        log.append({"id": "p1", "status": "ok", "items": []})
        log.append({"id": "p2", "status": "failed", "error_class": "server"})
    with path.open("a") as handle:
        handle.write('{"id": "p3", "status": "o')  # a kill -9 mid-write
    assert [r["id"] for r in contracts.read_log(path)] == ["p1", "p2"]
    with contracts.AppendLog(path) as log:  # reopening cuts the torn tail off
        log.append({"id": "p3", "status": "ok", "items": []})
    latest = contracts.read_generations(path)
    assert list(latest) == ["p1", "p2", "p3"]
    assert path.read_text().count("\n") == 3


def test_a_whole_record_missing_only_its_newline_is_kept(tmp_path):
    path = tmp_path / "generations.jsonl"
    path.write_text('{"id": "p1", "status": "ok", "items": []}\n{"id": "p2", "status": "ok", "items": []}')
    assert [r["id"] for r in contracts.read_log(path)] == ["p1", "p2"]
    with contracts.AppendLog(path) as log:
        log.append({"id": "p3", "status": "ok", "items": []})
    assert list(contracts.read_generations(path)) == ["p1", "p2", "p3"]


def test_torn_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "generations.jsonl"
    path.write_text('{"id": "p1", "status": "ok", "items": []}\n{"id": "p2"\n{"id": "p3"}\n')
    with pytest.raises(ContractError, match="generations.jsonl: line 2: invalid JSON"):
        contracts.read_log(path)


def prompt_record(**changes) -> dict:
    record = {"id": "bar-chart-000001", "keyword": "bar chart", "icl_indices": [0],
              "system": "s", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image", "path": "pool/x.png"}],
              "candidate_image": "pool/x.png"}
    record.update(changes)
    return record


def test_prompts_round_trip_and_reject_duplicates_and_bad_parts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    records = [prompt_record(), prompt_record(id="bar-chart-000002")]
    assert contracts.write_prompts(path, iter(records)) == 2
    assert list(contracts.iter_prompts(path)) == records
    contracts.write_prompts(path, [prompt_record(), prompt_record()])
    with pytest.raises(ContractError, match="line 2 field 'id': duplicate prompt id"):
        list(contracts.iter_prompts(path))
    bad_part = prompt_record(content=[{"type": "video", "path": "a.mp4"}])
    contracts.write_prompts(path, [bad_part])
    with pytest.raises(ContractError, match=r"content\[0\] field 'type': unknown part type 'video'"):
        list(contracts.iter_prompts(path))


def test_generation_record_needs_error_class_when_failed(tmp_path):
    path = tmp_path / "generations.jsonl"
    path.write_text('{"id": "p1", "status": "failed"}\n')
    with pytest.raises(ContractError, match="line 1: missing key 'error_class'"):
        contracts.read_generations(path)


def test_dataset_round_trip_allows_text_only_samples(tmp_path):
    dataset = {"image_folder": "data", "samples": [
        {"id": "p-0-0", "image_1": "pool/x.png", "keyword": "bar chart", "icl_indices": [1],
         "prompt_id": "p", "conversations": [{"from": "human", "value": "<image>\nQ"},
                                             {"from": "gpt", "value": "A"}]},
        {"id": "p-1-0", "conversations": [{"from": "human", "value": "Q"},
                                          {"from": "gpt", "value": "A"}]}]}
    contracts.write_dataset(tmp_path / "data.json", dataset)
    assert contracts.load_dataset(tmp_path / "data.json") == dataset
    broken = copy.deepcopy(dataset)
    del broken["samples"][1]["id"]
    with pytest.raises(ContractError, match="sample 1: missing key 'id'"):
        contracts.write_dataset(tmp_path / "bad.json", broken)
