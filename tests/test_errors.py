"""Errors a person reads: one message and a non-zero exit for bad input, a clean stop exits 0,
and the traceback only on request (HYDRA_FULL_ERROR=1)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmgen.contracts import ContractError
from mmgen.errors import UserError, user_message
from mmgen.imageio import ImageError

APP = Path(__file__).parent / "helpers" / "guarded_app.py"
ROOT = Path(__file__).resolve().parents[1]


def run_app(tmp_path: Path, *args: str, full_error: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "APP_OUT": str(tmp_path / "out")}
    env.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run([sys.executable, str(APP), *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path, check=False)


def test_user_error_is_one_message_and_exit_1(tmp_path):
    result = run_app(tmp_path, "outcome=user")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error executing job with overrides: ['outcome=user']",
        "reference.json: sample 3 field 'conversations': has no question", "",
        "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."]
    assert "has no question" in (tmp_path / "out" / "guarded_app.log").read_text()


def test_missing_config_value_is_one_message_naming_the_key(tmp_path):
    result = run_app(tmp_path, "outcome=config")
    assert result.returncode == 1
    assert "config: Missing mandatory value: needed" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_config_composition_error_names_the_key_without_traceback(tmp_path):
    result = run_app(tmp_path, "outcom=stop")  # a typo
    assert result.returncode == 1
    assert "outcom" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_traceback_comes_back_with_hydra_full_error(tmp_path):
    result = run_app(tmp_path, "outcome=user", full_error=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "mmgen.errors.UserError" in result.stderr


def test_stage_stop_exits_0_with_its_message(tmp_path):
    result = run_app(tmp_path, "outcome=stop")
    assert result.returncode == 0
    assert result.stdout.strip() == "wrote 3 requests to requests.jsonl; send them, then run again"
    assert "Error executing job" not in result.stderr


def test_a_bug_keeps_its_traceback(tmp_path):
    result = run_app(tmp_path, "outcome=bug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "an unexpected bug" in result.stderr


def test_multirun_reports_the_user_error_after_running_the_other_jobs(tmp_path):
    result = run_app(tmp_path, "-m", "outcome=user,ok,stop", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 1
    assert "#2 : outcome=stop" in result.stdout and "wrote 3 requests" in result.stdout
    assert "has no question" in result.stderr and "Traceback" not in result.stderr


def test_stage_with_non_utf8_reference_prints_file_and_byte_offset_only(tmp_path):
    """The real stage app: a raw UnicodeDecodeError traceback before; one line now."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    text = json.dumps({"image_folder": "", "dataset_description": "café charts", "samples": []},
                      ensure_ascii=False)
    (dataset / "reference.json").write_bytes(text.encode("latin-1"))
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    result = subprocess.run(
        [sys.executable, "-m", "mmgen.partition", f"dataset.root={dataset}",
         "dataset.builder=null", f"paths.out_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT, check=False)
    assert result.returncode == 1
    offset = text.encode("latin-1").index(b"\xe9")
    assert f"reference.json: byte offset {offset} (line 1 column {offset + 1}): is not UTF-8" \
        in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 4  # overrides, message, blank, hint


@pytest.mark.parametrize("error, expected", [
    (ContractError("task.json", "sample 2", "bad"), "task.json: sample 2: bad"),
    (ImageError("image 'a.png'", "file not found"), "image 'a.png' could not be read: file not found"),
    (FileNotFoundError(2, "No such file or directory", "ckpt.pt"), "ckpt.pt"),
    (KeyError("bug"), None),
])
def test_user_message_picks_user_errors_and_leaves_bugs(error, expected):
    message = user_message(error)
    assert message == expected if expected is None else expected in message


def test_user_error_wrapped_by_instantiate_is_still_found():
    from hydra.errors import InstantiationException

    try:
        try:
            raise UserError("filter.scorer.model: folder 'x' not found")
        except UserError as inner:
            raise InstantiationException("Error in call to target 'Scorer'") from inner
    except InstantiationException as outer:
        assert user_message(outer) == "filter.scorer.model: folder 'x' not found"
