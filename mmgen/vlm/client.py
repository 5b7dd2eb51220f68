"""Backends: an async chat client for OpenAI, Azure OpenAI, any compatible server, and the
in-process demo teacher (started through backend.server). The API key comes only from the environment variable the config names.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import openai
from omegaconf import DictConfig

from mmgen.errors import UserError
from mmgen.vlm.secrets import check_key_destination, check_key_env, redact_logs

ONLINE_BACKENDS = ("openai", "azure", "compatible", "demo_teacher")
ALL_BACKENDS = ONLINE_BACKENDS + ("dry_run", "openai_batch")
CONNECTIONS_PER_CLIENT = 16
PLACEHOLDER_KEY = "not-needed"  # sent to servers that want no key; the client insists on one


class MissingKeyError(UserError):
    """The backend needs an API key and its environment variable is not set."""


@dataclass
class Completion:
    text: str | None  # the reply's content
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


def check_backend(backend: DictConfig) -> None:
    """Fail before any work when the backend is unknown, its API key is missing, or the key
    would go where it must not."""
    if backend.name not in ALL_BACKENDS:
        raise ValueError(f"backend.name={backend.name!r} is not one of {', '.join(ALL_BACKENDS)}")
    check_key(backend)
    needs_key = backend.require_key and not (backend.name == "azure" and backend.entra_id)
    if backend.name == "openai_batch" and (not backend.batch.submit or backend.batch.results):
        needs_key = False  # export only, or import of files already downloaded
    if needs_key and not os.environ.get(backend.api_key_env):
        raise MissingKeyError(
            f"backend {backend.name} needs an API key in the environment variable "
            f"{backend.api_key_env}, which is not set. Run `export {backend.api_key_env}=...` "
            f"first (or name another variable with backend.api_key_env=NAME).")


def validate(cfg: DictConfig) -> None:
    """The generate stage's preflight: the backend is known and its key is there."""
    check_backend(cfg.backend)


def key_destination(backend: DictConfig, base_url: str | None = None) -> str | None:
    """The URL the key goes to: the given one, Azure's endpoint, or what the SDK falls back to
    (OPENAI_BASE_URL, else api.openai.com)."""
    if backend.name == "azure":
        return backend.get("azure_endpoint")
    return base_url or backend.get("base_url") or os.environ.get("OPENAI_BASE_URL")


def check_key(backend: DictConfig, base_url: str | None = None) -> None:
    """The key variable is a name, and an OpenAI key goes only to OpenAI (or an allowed proxy)."""
    check_key_env("backend.api_key_env", backend.api_key_env)
    if backend.name not in ("demo_teacher", "dry_run"):  # in-process teacher, nothing sent
        check_key_destination(backend.api_key_env, key_destination(backend, base_url),
                              bool(backend.get("allow_key_to_custom_base_url", False)))


def api_key(backend: DictConfig, base_url: str | None = None) -> str:
    """The key from the environment variable named by backend.api_key_env (or a placeholder),
    once checked for where it goes; from here on, logs redact it."""
    check_key(backend, base_url)
    redact_logs()
    return os.environ.get(backend.api_key_env) or PLACEHOLDER_KEY


def make_clients(backend: DictConfig, base_url: str | None, concurrency: int) -> list:
    """AsyncOpenAI (or AsyncAzureOpenAI) clients for `concurrency` requests in flight."""
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # else one INFO line per request
    count = max(1, math.ceil(concurrency / CONNECTIONS_PER_CLIENT))
    return [make_openai(backend, base_url, math.ceil(concurrency / count)) for _ in range(count)]


def make_openai(backend: DictConfig, base_url: str | None, connections: int):
    """An AsyncOpenAI (or AsyncAzureOpenAI) client without built-in retries: the engine retries."""
    limits = httpx2.Limits(max_connections=connections + 4,
                           max_keepalive_connections=connections + 4)
    http_client = openai.DefaultAsyncHttpx2Client(limits=limits)
    if backend.name == "azure":
        options: dict = {"azure_endpoint": backend.azure_endpoint, "api_version": backend.api_version}
        if backend.entra_id:
            options["azure_ad_token_provider"] = _entra_token_provider()
        else:
            options["api_key"] = api_key(backend)
        return openai.AsyncAzureOpenAI(**options, max_retries=0, http_client=http_client)
    return openai.AsyncOpenAI(api_key=api_key(backend, base_url), base_url=base_url, max_retries=0,
                              http_client=http_client)


def _entra_token_provider():
    try:
        from azure.identity import DefaultAzureCredential, get_bearer_token_provider
    except ImportError as err:
        raise RuntimeError("backend.entra_id=true needs azure-identity: pip install "
                           "'mmgen[azure]' (or set backend.entra_id=false and use a key)") from err
    return get_bearer_token_provider(DefaultAzureCredential(),
                                     "https://cognitiveservices.azure.com/.default")


class ChatClient:
    """Sends /chat/completions bodies; raises the openai client's errors unchanged.

    Requests are spread round-robin over several clients: the HTTP pool scans all of its
    connections for every request, so pools of about CONNECTIONS_PER_CLIENT keep that cheap.
    """

    def __init__(self, clients: list, timeout_s: float):
        self.clients = clients
        self.timeout_s = timeout_s
        self._next = itertools.cycle(clients)

    async def complete(self, body: dict) -> Completion:
        """One HTTP call, no retries. Posting the ready body skips the SDK's per-field
        transformation of the messages, which costs about 1 ms of CPU per request."""
        response = await next(self._next).post("/chat/completions", cast_to=httpx2.Response,
                                               body=body, options={"timeout": self.timeout_s})
        data = json.loads(response.content)
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Completion(choice["message"].get("content"), int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or 0), choice.get("finish_reason"))

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()


@contextlib.contextmanager
def endpoint(cfg: DictConfig) -> Iterator[str | None]:
    """The base URL to call; a backend that names a local server (the demo teacher) has it
    started for the duration and gets its address."""
    if not cfg.backend.server:
        yield cfg.backend.base_url
        return
    from mmgen.stages import call

    with call(cfg.backend.server, cfg) as base_url:
        yield base_url
