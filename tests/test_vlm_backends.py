"""Backends: Azure OpenAI request shape, Entra ID with and without azure-identity, compatible
servers without a key, and an unknown backend name."""
from __future__ import annotations

import sys
import time
import types

import pytest
from hydra.errors import ConfigCompositionException

from mmgen import runner
from mmgen.contracts import read_log
from mmgen.testing.demo_prompts import demo_prompt_records, write_prompts_fixture
from mmgen.testing.stub_server import StubServer


def test_azure_sends_to_the_deployment_with_api_version_and_key(make_config, demo_root,
                                                               monkeypatch):
    monkeypatch.setenv("MMGEN_TEST_AZURE_KEY", "azure-test-key")
    with StubServer() as server:
        cfg = make_config(f"dataset.root={demo_root}", "backend=azure", "generate.progress=false",
                          f"backend.azure_endpoint=http://127.0.0.1:{server.port}",
                          "backend.deployment=my-gpt4o", "backend.api_key_env=MMGEN_TEST_AZURE_KEY")
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, 2))
        out = runner.run(cfg, "generate", alone=True)
    chat = [h for h in server.headers_seen if h[":path"].split("?")[0].endswith("/chat/completions")]
    assert len(chat) == 2
    assert all(h[":path"] == "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
               for h in chat)
    assert all(h.get("api-key") == "azure-test-key" for h in chat)
    records = read_log(out / "generations.jsonl")
    assert all(r["status"] == "ok" and r["model"] == "gpt-4o" for r in records)  # priced as gpt-4o


def test_entra_id_without_azure_identity_says_what_to_install(make_config, demo_root,
                                                              monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if the extra were missing
    cfg = make_config(f"dataset.root={demo_root}", "backend=azure", "backend.entra_id=true",
                      "backend.azure_endpoint=http://127.0.0.1:9", "generate.progress=false")
    write_prompts_fixture(cfg, demo_prompt_records(demo_root, 1))
    with pytest.raises(RuntimeError, match=r"azure-identity.*mmgen\[azure\]"):
        runner.run(cfg, "generate", alone=True)


def test_entra_id_sends_the_credential_token_and_no_key(make_config, demo_root, monkeypatch):
    identity = pytest.importorskip("azure.identity")  # CI installs every extra
    scopes_asked = []

    class FakeCredential:  # stands in for DefaultAzureCredential, which needs a real tenant
        def get_token(self, *scopes, **kwargs):
            scopes_asked.extend(scopes)
            return types.SimpleNamespace(token="entra-token", expires_on=int(time.time()) + 3600)

    monkeypatch.setattr(identity, "DefaultAzureCredential", FakeCredential)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with StubServer() as server:
        cfg = make_config(f"dataset.root={demo_root}", "backend=azure", "backend.entra_id=true",
                          f"backend.azure_endpoint=http://127.0.0.1:{server.port}",
                          "backend.deployment=my-gpt4o", "generate.progress=false")
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, 1))
        runner.run(cfg, "generate", alone=True)
    chat = [h for h in server.headers_seen if h[":path"].split("?")[0].endswith("/chat/completions")]
    assert chat and all(h.get("authorization") == "Bearer entra-token" for h in chat)
    assert not any("api-key" in h for h in chat)
    assert scopes_asked == ["https://cognitiveservices.azure.com/.default"]


def test_compatible_server_needs_no_key(make_config, demo_root, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with StubServer() as server:
        cfg = make_config(f"dataset.root={demo_root}", "backend=compatible",
                          f"backend.base_url={server.base_url}", "backend.model=qwen2-vl",
                          "generate.progress=false")
        write_prompts_fixture(cfg, demo_prompt_records(demo_root, 1))
        runner.run(cfg, "generate", alone=True)
    assert server.headers_seen[-1]["authorization"] == "Bearer not-needed"
    assert server.requests[-1]["model"] == "qwen2-vl"


def test_unknown_backend_is_named(make_config):
    with pytest.raises(ConfigCompositionException, match="claude"):  # a closed choice
        make_config("backend.name=claude")
