"""OpenAI Batch API: export split at the limits, import equal to the online path, and
submit/poll/import against a local fake of the files and batches endpoints."""
from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from mmgen import runner
from mmgen.contracts import load_dataset, read_json, read_log
from mmgen.demo.teacher import Teacher, TeacherConfig
from mmgen.testing.demo_prompts import demo_prompt_records, write_prompts_fixture
from mmgen.testing.stub_server import StubServer

EXPORT_ONLY = ["backend=openai_batch", "backend.batch.submit=false", "generate.progress=false"]


def request_lines(out: Path) -> list[tuple[str, dict]]:
    return [(path.name, json.loads(line)) for path in sorted((out / "batch").glob("requests-*"))
            for line in path.read_text().splitlines()]


def test_export_splits_by_count_and_bytes(make_config, demo_root, tmp_path):
    probe = make_config(f"dataset.root={demo_root}", *EXPORT_ONLY, out_dir=tmp_path / "probe")
    write_prompts_fixture(probe, demo_prompt_records(demo_root, 1))
    runner.run(probe, "generate", alone=True)
    line_bytes = (tmp_path / "probe/batch/requests-r1-000.jsonl").stat().st_size
    limit = int(line_bytes * 2.5)  # about two requests per file by size
    cfg = make_config(f"dataset.root={demo_root}", *EXPORT_ONLY, "backend.batch.max_requests=3",
                      f"backend.batch.max_bytes={limit}")
    prompts = [p["id"] for p in demo_prompt_records(demo_root, 11)]
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 11))
    out = runner.run(cfg, "generate", alone=True)
    files = sorted((out / "batch").glob("requests-*.jsonl"))
    assert all(path.stat().st_size <= limit for path in files)
    assert all(len(path.read_text().splitlines()) <= 3 for path in files)
    assert len(files) >= 5  # 11 requests at about 2 per file
    lines = request_lines(out)
    assert [line["custom_id"] for _, line in lines] == prompts
    assert all(line["url"] == "/v1/chat/completions" and line["body"]["model"] == "gpt-4o"
               for _, line in lines)
    state = read_json(out / "batch/batches.json")["files"]
    assert sum(entry["requests"] for entry in state) == 11
    too_small = make_config(f"dataset.root={demo_root}", *EXPORT_ONLY, "backend.batch.max_bytes=1000",
                            out_dir=tmp_path / "small")
    write_prompts_fixture(too_small, demo_prompt_records(demo_root, 2))
    with pytest.raises(ValueError, match=f"prompt {prompts[0]}: its request is .* bytes"):
        runner.run(too_small, "generate", alone=True)


def teacher_results(out: Path, demo_root: Path) -> Path:
    """An output file in the Batch API's format: each exported request body POSTed to the demo
    teacher, its response body stored under the request's custom_id."""
    results = out / "teacher-results.jsonl"
    with Teacher(TeacherConfig(data_dir=str(demo_root), model="gpt-4o")) as base_url, \
            httpx2.Client(base_url=base_url, timeout=60) as http, results.open("w") as handle:
        for number, (_, line) in enumerate(request_lines(out)):
            response = http.post("/chat/completions", json=line["body"])
            handle.write(json.dumps({"id": f"batch_req_{number}", "custom_id": line["custom_id"],
                                     "response": {"status_code": response.status_code,
                                                  "body": response.json()},
                                     "error": None}) + "\n")
    return results


def test_import_of_teacher_results_equals_the_online_run(make_config, demo_root, tmp_path):
    common = [f"dataset.root={demo_root}", "min_gen_per_candidate=2", "backend.model=gpt-4o",
              "generate.progress=false"]
    online = make_config(*common, "backend=demo_teacher", out_dir=tmp_path / "online")
    write_prompts_fixture(online, demo_prompt_records(demo_root, 12, wanted=2))
    runner.run(online, "generate", alone=True)
    batch = make_config(*common, *EXPORT_ONLY, out_dir=tmp_path / "batch")
    write_prompts_fixture(batch, demo_prompt_records(demo_root, 12, wanted=2))
    runner.run(batch, "generate", alone=True)
    results = teacher_results(tmp_path / "batch", demo_root)
    runner.run(make_config(*common, *EXPORT_ONLY, f"backend.batch.results=['{results}']",
                             out_dir=tmp_path / "batch"), "generate", alone=True)
    assert load_dataset(tmp_path / "batch/data.json") == load_dataset(tmp_path / "online/data.json")
    by_id = {record["id"]: record for record in read_log(tmp_path / "online/generations.jsonl")}
    imported = read_log(tmp_path / "batch/generations.jsonl")
    assert len(imported) == 12 and all(record == by_id[record["id"]] for record in imported)
    assert read_json(tmp_path / "batch/stats.json")["generate"]["ok"] == 12


def test_submit_poll_import_against_a_fake_batch_api(make_config, demo_root, monkeypatch):
    monkeypatch.setenv("MMGEN_TEST_BATCH_KEY", "sk-batch-test")
    with StubServer() as server:
        overrides = [f"dataset.root={demo_root}", "backend=openai_batch", "generate.progress=false",
                     f"backend.base_url={server.base_url}", "backend.api_key_env=MMGEN_TEST_BATCH_KEY",
                     "backend.batch.max_requests=5", "backend.batch.poll_s=0.01"]
        cfg = make_config(*overrides, "backend.batch.wait=false")
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, 12))
        out = runner.run(cfg, "generate", alone=True)  # exports 3 files, submits 3 batches, does not wait
        assert len(server.batches) == 3 and not (out / "data.json").read_text().count("prompt_id")
        assert read_json(out / "stats.json")["generate"]["pending"] == 12
        runner.run(make_config(*overrides), "generate", alone=True)  # polls and imports; submits nothing new
        assert len(server.batches) == 3
        state = read_json(out / "batch/batches.json")["files"]
        assert all(entry["imported"] and entry["status"] == "completed" for entry in state)
        records = read_log(out / "generations.jsonl")
        assert len(records) == 12 and all(r["status"] == "ok" for r in records)
        assert len(load_dataset(out / "data.json")["samples"]) == 12
        runner.run(make_config(*overrides), "generate", alone=True)  # all done: nothing happens
        assert len(server.batches) == 3 and len(read_log(out / "generations.jsonl")) == 12


def test_changed_prompts_move_the_old_batch_files_aside(make_config, demo_root):
    # A batch exported (or submitted) for old prompts must not be polled and imported into the
    # fresh log of new prompts: prompt ids repeat across prompt versions (bar-chart-000000...).
    cfg = make_config(f"dataset.root={demo_root}", *EXPORT_ONLY)
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 3))
    out = runner.run(cfg, "generate", alone=True)
    old = {line["custom_id"]: line["body"] for _, line in request_lines(out)}
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 4, num_examples=2))
    runner.run(cfg, "generate", alone=True)
    new = {line["custom_id"]: line["body"] for _, line in request_lines(out)}
    assert len(new) == 4 and all(new[pid] != body for pid, body in old.items())
    assert sum(entry["requests"] for entry in read_json(out / "batch/batches.json")["files"]) == 4
    aside = list(out.glob("batch.superseded-*"))
    assert len(aside) == 1 and (aside[0] / "batches.json").exists()
