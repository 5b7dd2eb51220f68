"""The generate stage end to end: demo teacher Q/A, resume, retry_failed, budget, dry run,
format fixing, item counts, API keys."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmgen import generate, runner
from mmgen.contracts import load_dataset, read_json, read_log
from mmgen.errors import StageStop
from mmgen.testing.demo_prompts import demo_prompt_records, write_prompts_fixture
from mmgen.testing.stub_server import StubServer, canned_answer
from mmgen.vlm.client import MissingKeyError
from mmgen.vlm.errors import FatalBackendError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stub():
    with StubServer() as server:
        yield server


def stub_config(make_config, demo_root, server, *overrides):
    return make_config(f"dataset.root={demo_root}", "generate.progress=false",
                       "backend=compatible", f"backend.base_url={server.base_url}",
                       "backend.model=gpt-4o", "generate.backoff_base_s=0.01", *overrides)


def truthful(entry: dict, question: str, answer: str) -> int:
    """1 if the answer was checked against the chart's truth (asserting it), 0 if not checkable."""
    data = entry["data"]
    pairs = dict(zip(data.get("labels", []), data.get("values", [])))
    if not pairs:
        return 0
    ranked = sorted(pairs, key=pairs.get, reverse=True)
    for label, value in pairs.items():
        lookups = (f"What is the value of {label} in the chart?", f"What was the value in {label}?",
                   f"What percentage of the pie does {label} account for?")
        if question in lookups:
            assert float(answer.rstrip("%")) == pytest.approx(value, rel=0.01), question
            return 1
        for other, other_value in pairs.items():
            if question == f"What is the sum of {label} and {other}?":
                assert float(answer) == pytest.approx(value + other_value, rel=0.01), question
                return 1
    if question.startswith("How many ") and question.endswith(" does the chart have?"):
        assert int(answer) == len(pairs), question
        return 1
    if question.startswith("Which ") and question.endswith(" has the second highest value?"):
        assert answer == ranked[1], question
        return 1
    return 0


def test_demo_teacher_gives_truthful_qa(make_config, demo_root):
    cfg = make_config(f"dataset.root={demo_root}", "generate.progress=false",
                      "min_gen_per_candidate=3")
    prompts = list(demo_prompt_records(demo_root, 12, wanted=3))
    write_prompts_fixture(cfg, prompts)
    out = runner.run(cfg, "generate", alone=True)
    samples = load_dataset(out / "data.json")["samples"]
    assert len(samples) == 36 and len({s["id"] for s in samples}) == 36
    by_prompt = {p["id"]: p for p in prompts}
    truth = json.loads((demo_root / "truth.json").read_text())
    checked = 0
    for sample in samples:
        prompt = by_prompt[sample["prompt_id"]]
        assert sample["image_1"] == prompt["candidate_image"]
        assert sample["keyword"] == prompt["keyword"]
        assert sample["icl_indices"] == prompt["icl_indices"]
        question = sample["conversations"][0]["value"]
        answer = sample["conversations"][1]["value"]
        assert question.startswith("<image>\n")
        checked += truthful(truth[sample["image_1"]], question[len("<image>\n"):], answer)
    assert checked >= 12  # lookups, sums, counts and rankings read the right chart
    stats = read_json(out / "stats.json")["generate"]
    assert (stats["prompts"], stats["ok"], stats["failed"], stats["samples"]) == (12, 12, 0, 36)
    assert stats["tokens_in"] > 0 and stats["run"]["http_calls"] == 12


def test_rerun_sends_nothing_and_rebuilds_data_without_duplicates(make_config, demo_root, stub):
    cfg = stub_config(make_config, demo_root, stub)
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 10))
    out = runner.run(cfg, "generate", alone=True)
    first = (out / "data.json").read_bytes()
    assert stub.chat_count == 10
    runner.run(cfg, "generate", alone=True)
    (out / "data.json").unlink()
    runner.run(cfg, "generate", alone=True)
    assert stub.chat_count == 10  # nothing sent again
    assert len(read_log(out / "generations.jsonl")) == 10
    assert (out / "data.json").read_bytes() == first


def test_unreadable_image_fails_only_its_prompt_until_retried(make_config, demo_root, stub,
                                                              tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "extra").mkdir()  # not the pool: changing it must not rerun retrieval
    for name in ("a", "b", "c"):
        Image.new("RGB", (64, 48), name == "a" and "red" or "blue").save(root / f"extra/{name}.png")
    (root / "extra/bad.png").write_bytes(b"\x89PNG truncated")
    prompts = [{"id": f"p{index}", "keyword": "bar chart", "icl_indices": [],
                "content": [{"type": "text", "text": 'Reply with only a JSON list of 1 objects '
                             'with the keys "Q", "A".'}, {"type": "image", "path": path}],
                "candidate_image": path}
               for index, path in enumerate(["extra/a.png", "extra/bad.png", "extra/c.png"])]
    cfg = stub_config(make_config, root, stub)
    write_prompts_fixture(cfg, prompts)
    out = runner.run(cfg, "generate", alone=True)
    records = {r["id"]: r for r in read_log(out / "generations.jsonl")}
    assert [records[p]["status"] for p in ("p0", "p1", "p2")] == ["ok", "failed", "ok"]
    assert records["p1"]["error_class"] == "image" and "extra/bad.png" in records["p1"]["error"]
    assert stub.chat_count == 2
    Image.new("RGB", (64, 48), "green").save(root / "extra/bad.png")  # the user fixes the file
    runner.run(cfg, "generate", alone=True)
    assert stub.chat_count == 2  # failed prompts are kept unless retry_failed
    cfg = stub_config(make_config, root, stub, "generate.retry_failed=true")
    runner.run(cfg, "generate", alone=True)
    assert stub.chat_count == 3
    samples = load_dataset(out / "data.json")["samples"]
    assert sorted(s["prompt_id"] for s in samples) == ["p0", "p1", "p2"]
    assert read_json(out / "stats.json")["generate"]["failed"] == 0


def test_changed_prompts_move_the_old_log_aside(make_config, demo_root, stub):
    cfg = stub_config(make_config, demo_root, stub)
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 4))
    out = runner.run(cfg, "generate", alone=True)
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 6, num_examples=2))
    runner.run(cfg, "generate", alone=True)
    aside = list(out.glob("generations.superseded-*.jsonl"))
    assert len(aside) == 1 and len(read_log(aside[0])) == 4
    assert len(read_log(out / "generations.jsonl")) == 6 and stub.chat_count == 10


def test_budget_stops_new_requests_and_keeps_finished(make_config, demo_root, caplog):
    with StubServer(usage=(1000, 0)) as server:  # every reply reports 1000 prompt tokens
        overrides = ["generate.prices.gpt-4o.input=1000", "generate.concurrency=1"]  # $1 a reply
        cfg = stub_config(make_config, demo_root, server, *overrides, "generate.max_cost_usd=5.5")
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, 10))
        with caplog.at_level(logging.WARNING):
            out = runner.run(cfg, "generate", alone=True)
        stats = read_json(out / "stats.json")["generate"]
        assert stats["ok"] == 5 and stats["pending"] == 5 and stats["run"]["budget_reached"]
        assert stats["cost_usd"] == pytest.approx(5.0)
        assert "generate.max_cost_usd" in caplog.text and "5 prompts were not sent" in caplog.text
        assert len(load_dataset(out / "data.json")["samples"]) == 5
        runner.run(stub_config(make_config, demo_root, server, *overrides), "generate", alone=True)  # no cap: resumes
        assert read_json(out / "stats.json")["generate"]["ok"] == 10 and server.chat_count == 10


def test_dry_run_writes_requests_and_prints_the_estimate(make_config, demo_root, capsys):
    cfg = make_config(f"dataset.root={demo_root}", "backend=dry_run")
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 7))
    with pytest.raises(StageStop, match="requests.jsonl; nothing was sent"):
        runner.run(cfg, "generate", alone=True)  # a clean stop: nothing downstream can run
    out = Path(cfg.paths.out_dir)
    requests = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in requests] == [p["id"] for p in demo_prompt_records(demo_root, 7)]
    body = requests[0]["body"]
    assert body["model"] == "gpt-4o" and body["messages"][0]["role"] == "system"
    assert "not inlined" in body["messages"][1]["content"][1]["image_url"]["url"]
    printed = capsys.readouterr().out
    assert "7 requests" in printed and "estimated cost" in printed
    estimate = read_json(out / "stats.json")["generate_dry_run"]
    assert estimate["prompt_tokens"] > 7 * 2 * 85 and estimate["cost_usd"] > 0
    assert not (out / "generations.jsonl").exists()


def test_malformed_replies_get_format_fixing_calls_then_fail_as_parse(make_config, demo_root):
    def fixed_on_second_try(body: dict) -> str:
        return canned_answer(body) if len(body["messages"]) > 2 else "Here you go: Q=..., A=..."
    with StubServer(answer=lambda body: "{'Q': 'never json'}") as always_bad:
        cfg = stub_config(make_config, demo_root, always_bad)
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, 1))
        out = runner.run(cfg, "generate", alone=True)
        record = read_log(out / "generations.jsonl")[0]
        assert (record["status"], record["error_class"], record["attempts"]) == ("failed", "parse", 4)
        fix = always_bad.requests[-1]["messages"]
        assert len(fix) == 4 and fix[2] == {"role": "assistant", "content": "{'Q': 'never json'}"}
        assert "not valid JSON" in fix[3]["content"] and "JSON list of 1 objects" in fix[3]["content"]
    with StubServer(answer=fixed_on_second_try) as once_bad:
        cfg = stub_config(make_config, demo_root, once_bad, "generate.retry_failed=true")
        runner.run(cfg, "generate", alone=True)
        record = read_log(out / "generations.jsonl")[-1]
        assert (record["status"], record["attempts"], once_bad.chat_count) == ("ok", 2, 2)


def test_item_count_mismatch_is_logged_extra_dropped(make_config, demo_root, caplog):
    three = json.dumps([{"Q": f"q{i}", "A": f"a{i}"} for i in range(3)])
    with StubServer(answer=lambda body: three) as server, caplog.at_level(logging.WARNING):
        cfg = stub_config(make_config, demo_root, server, "min_gen_per_candidate=2")
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, 2, wanted=2))
        out = runner.run(cfg, "generate", alone=True)
    assert [len(r["items"]) for r in read_log(out / "generations.jsonl")] == [2, 2]
    assert "asked for 2 items, got 3; dropped the extra" in caplog.text
    assert read_json(out / "stats.json")["generate"]["run"]["count_mismatch"] == 2


def test_refused_key_stops_the_run(make_config, demo_root):
    with StubServer(fail_first=10**9, fail_status=401) as server:
        cfg = stub_config(make_config, demo_root, server, "generate.concurrency=4")
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, 20))
        with pytest.raises(FatalBackendError, match="API key was refused"):
            runner.run(cfg, "generate", alone=True)
        assert server.chat_count <= 4  # the requests in flight; nothing new is sent
        assert read_log(Path(cfg.paths.out_dir) / "generations.jsonl") == []


def test_missing_key_fails_before_any_work(make_config, monkeypatch):
    monkeypatch.delenv("MMGEN_TEST_NO_SUCH_KEY", raising=False)
    cfg = make_config("backend=openai", "backend.api_key_env=MMGEN_TEST_NO_SUCH_KEY")
    with pytest.raises(MissingKeyError, match="MMGEN_TEST_NO_SUCH_KEY"):
        runner.run(cfg, "generate", alone=True)
    assert not list(Path(cfg.paths.out_dir).glob("*.jsonl"))


def test_api_key_is_used_but_never_written(make_config, demo_root, stub, tmp_path):
    secret = "sk-mmgen-test-" + os.urandom(8).hex()
    out = tmp_path / "run"
    overrides = [f"dataset.root={demo_root}", "backend=compatible",
                 f"backend.base_url={stub.base_url}", "backend.model=gpt-4o",
                 "backend.api_key_env=MMGEN_TEST_SECRET", "backend.require_key=true",
                 "generate.progress=false"]
    write_prompts_fixture(make_config(*overrides, out_dir=out), demo_prompt_records(demo_root, 3))
    command = [sys.executable, "-m", "mmgen.generate", *overrides, f"paths.out_dir={out}",
               f"paths.cache_dir={out}/.cache", "only=true"]
    env = {**os.environ, "MMGEN_TEST_SECRET": secret}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(h.get("authorization") == f"Bearer {secret}" for h in stub.headers_seen)
    files = [path for path in out.rglob("*") if path.is_file()]
    assert any(".hydra" in path.parts for path in files) and len(files) > 5
    assert not [path for path in files if secret.encode() in path.read_bytes()]
    assert secret not in result.stdout + result.stderr


def test_logs_moved_aside_within_one_second_are_all_kept(make_config, demo_root, stub,
                                                          monkeypatch):
    monkeypatch.setattr("mmgen.vlm.resume.time.strftime", lambda *_: "20250101-000000")
    cfg = stub_config(make_config, demo_root, stub)
    for count in (2, 3, 4):  # each change of prompts moves the previous log aside
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, count))
        out = runner.run(cfg, "generate", alone=True)
    aside = sorted(len(read_log(path)) for path in out.glob("generations.superseded-*.jsonl"))
    assert aside == [2, 3]


def test_a_torn_log_key_moves_the_log_aside_instead_of_crashing(make_config, demo_root, stub):
    cfg = stub_config(make_config, demo_root, stub)
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 2))
    out = runner.run(cfg, "generate", alone=True)
    (out / ".mmgen" / "generations.key.json").write_text('{"prompts_sha')  # killed mid-write
    generate.compute(cfg, out)  # the next time generate runs
    assert len(list(out.glob("generations.superseded-*.jsonl"))) == 1
    assert len(read_log(out / "generations.jsonl")) == 2
