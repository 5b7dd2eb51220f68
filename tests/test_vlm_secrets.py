"""API keys stay secret: redacted from error bodies and logs, refused as a config value, and an
OpenAI key never goes to a server that is not OpenAI's without an explicit override."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import openai
import pytest

from mmgen.errors import UserError
from mmgen.testing.stub_server import StubServer
from mmgen.vlm.client import make_clients, validate
from mmgen.vlm.errors import FatalBackendError, classify
from mmgen.vlm.secrets import REDACTED, redact, refuse_keys_in_overrides

REPO = Path(__file__).resolve().parents[1]
OPENAI_KEY = "sk-proj-" + "A1b2C3d4" * 6  # shaped like a real key, never valid


def fresh_key() -> str:
    return "sk-mmgen-test-" + os.urandom(12).hex()


def status_error(status: int, message: str) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, request=request)
    cls = {401: openai.AuthenticationError, 400: openai.BadRequestError}[status]
    return cls(message, response=response, body={"error": {"message": message}})


def test_error_bodies_echoing_the_key_are_redacted(monkeypatch):
    secret = fresh_key()
    monkeypatch.setenv("MMGEN_TEST_KEY", secret)
    with pytest.raises(FatalBackendError) as refused:
        classify(status_error(401, f"Incorrect API key provided: {secret}"))
    assert secret not in str(refused.value) and REDACTED in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    # a 400 is recorded in generations.jsonl: its message is redacted too, even for a key
    # that is in no environment variable
    stranger = "sk-" + "Zz9" * 12
    recorded = classify(status_error(400, f"bad request from {stranger} / {secret}"))
    assert secret not in str(recorded) and stranger not in str(recorded)


def test_redact_keeps_ordinary_text():
    text = "sk-learn-style-experiment scored 0.93 on hf_hub"
    assert redact(text, []) == text
    assert redact(f"key={OPENAI_KEY}.", []) == f"key={REDACTED}."


def test_logs_are_redacted_once_a_key_is_used(monkeypatch, caplog, make_config):
    secret = fresh_key()
    monkeypatch.setenv("MMGEN_TEST_KEY", secret)
    cfg = make_config("backend=compatible", "backend.base_url=http://127.0.0.1:9/v1",
                      "backend.model=m", "backend.api_key_env=MMGEN_TEST_KEY")
    make_clients(cfg.backend, cfg.backend.base_url, 1)
    with caplog.at_level(logging.INFO):
        logging.getLogger("mmgen.test").warning("server said: %s", f"bad key {secret}")
    assert secret not in caplog.text and f"bad key {REDACTED}" in caplog.text
    # arguments that do not fit the format are left for logging to report when emitted
    record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "n=%d", ("x",), None)
    assert (record.msg, record.args) == ("n=%d", ("x",))


def test_refused_key_echoed_by_the_server_never_reaches_the_console(make_config, demo_root,
                                                                    tmp_path):
    """The real stage app against a server that echoes the key in its 401 body."""
    from mmgen.testing.demo_prompts import demo_prompt_records, write_prompts_fixture

    secret = fresh_key()
    out = tmp_path / "run"
    with StubServer(fail_first=10**9, fail_status=401, echo_key=True) as server:
        overrides = [f"dataset.root={demo_root}", "backend=compatible",
                     f"backend.base_url={server.base_url}", "backend.model=gpt-4o",
                     "backend.api_key_env=MMGEN_TEST_SECRET", "generate.progress=false"]
        write_prompts_fixture(make_config(*overrides, out_dir=out),
                              demo_prompt_records(demo_root, 2))
        env = {**os.environ, "MMGEN_TEST_SECRET": secret}
        env.pop("HYDRA_FULL_ERROR", None)
        result = subprocess.run(
            [sys.executable, "-m", "mmgen.generate", *overrides, f"paths.out_dir={out}",
             f"paths.cache_dir={out}/.cache"],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 1
    assert "the API key was refused" in result.stderr and f"Bearer {REDACTED}" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not [path for path in out.rglob("*")
                if path.is_file() and secret.encode() in path.read_bytes()]


@pytest.mark.parametrize("overrides", [
    ["backend=openai", "backend.base_url=https://llm-proxy.example.net/v1"],
    ["backend=compatible", "backend.base_url=http://10.0.0.7:8000/v1", "backend.model=m",
     "backend.api_key_env=OPENAI_API_KEY"],
    ["backend=compatible", "backend.base_url=http://10.0.0.7:8000/v1", "backend.model=m",
     "backend.api_key_env=MY_COPY_OF_THE_KEY"],  # the same key under another name
])
def test_openai_key_is_not_sent_to_another_host(make_config, monkeypatch, overrides):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("MY_COPY_OF_THE_KEY", OPENAI_KEY)
    cfg = make_config(*overrides)
    with pytest.raises(UserError, match=r"is your OpenAI key .* not OpenAI's API.*"
                                        r"allow_key_to_custom_base_url=true"):
        validate(cfg)
    with pytest.raises(UserError, match="not OpenAI's API"):
        make_clients(cfg.backend, cfg.backend.base_url, 1)
    allowed = make_config(*overrides, "backend.allow_key_to_custom_base_url=true")
    validate(allowed)
    assert make_clients(allowed.backend, allowed.backend.base_url, 1)[0].api_key == OPENAI_KEY


def test_openai_key_goes_to_openai_and_other_keys_anywhere(make_config, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    validate(make_config("backend=openai"))
    validate(make_config("backend=openai", "backend.base_url=https://api.openai.com/v1"))
    monkeypatch.setenv("COMPATIBLE_API_KEY", fresh_key())
    validate(make_config("backend=compatible", "backend.base_url=http://10.0.0.7:8000/v1",
                         "backend.model=m", "backend.require_key=true"))
    monkeypatch.setenv("OPENAI_BASE_URL", "https://elsewhere.example.org/v1")  # the SDK's default
    with pytest.raises(UserError, match="elsewhere.example.org"):
        validate(make_config("backend=openai"))


@pytest.mark.parametrize("arg", [
    f"backend.api_key_env={OPENAI_KEY}", f"backend.api_key_env='{OPENAI_KEY}'",
    f"+backend.api_key_env={OPENAI_KEY}", "evaluate.backend.api_key_env=12345-abcdef",
    f"backend.api_key_env=OPENAI_API_KEY,{OPENAI_KEY}", f"name={OPENAI_KEY}",
])
def test_key_looking_overrides_are_refused_without_echoing_them(arg):
    with pytest.raises(UserError, match="looks like an API key") as refused:
        refuse_keys_in_overrides(["+experiment=demo", arg])
    assert OPENAI_KEY not in str(refused.value) and "12345-abcdef" not in str(refused.value)


def test_plain_overrides_pass():
    refuse_keys_in_overrides(["backend.api_key_env=MY_SERVER_KEY", "name=sk-learn-baseline",
                              "backend.base_url=http://localhost:8000/v1", "-m", "icl=1,3"])


def test_key_pasted_on_the_command_line_is_never_written(tmp_path):
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    result = subprocess.run(
        [sys.executable, "-m", "mmgen.prompts", f"backend.api_key_env={OPENAI_KEY}",
         f"paths.out_dir={out}", f"hydra.run.dir={out}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 1
    assert "looks like an API key" in result.stderr and "Traceback" not in result.stderr
    assert OPENAI_KEY not in result.stdout + result.stderr
    assert not out.exists() and not list(tmp_path.rglob("*.yaml"))


def test_key_in_a_config_file_is_refused_before_sending(make_config):
    cfg = make_config("backend=openai", f"backend.api_key_env={OPENAI_KEY}")  # as a file would
    with pytest.raises(UserError, match="backend.api_key_env=.* looks like an API key") as refused:
        validate(cfg)
    assert OPENAI_KEY not in str(refused.value)
