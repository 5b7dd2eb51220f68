"""API keys stay secret: redacted from error bodies and logs, never saved in a config record,
and an OpenAI key is never sent to a server that is not OpenAI's unless the user says so.

Light on imports: `mmgen.stage.launch` checks the command line with it before Hydra starts.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from mmgen.errors import UserError

# what provider keys look like: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), Hugging Face
# (hf_), GitHub (ghp_), Google (AIza); long and with a digit, so words like sk-learn pass
KEY_PATTERN = re.compile(r"\b(?:sk-(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{20,}"
                         r"|hf_[A-Za-z0-9]{20,}|ghp_[A-Za-z0-9]{20,}|AIza[A-Za-z0-9_\-]{30,})")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
MIN_SECRET_CHARS = 8  # shorter environment values ("1", "true") are not worth hiding
REDACTED = "[redacted key]"
OPENAI_HOSTS = {"api.openai.com"}
OPENAI_KEY_ENV = "OPENAI_API_KEY"


def looks_like_key(value: str) -> bool:
    """True when `value` cannot be an environment variable's name but looks like a key."""
    if KEY_PATTERN.search(value) or not ENV_NAME.fullmatch(value):
        return True
    # names are words: a long run mixing upper, lower case and digits is a token
    return (len(value) >= 32 and any(c.isdigit() for c in value)
            and any(c.islower() for c in value) and any(c.isupper() for c in value))


def secret_values() -> list[str]:
    """Values of environment variables named like secrets (…KEY, …TOKEN…), longest first."""
    values = {value for name, value in os.environ.items()
              if SECRET_ENV_NAME.search(name) and len(value) >= MIN_SECRET_CHARS}
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with every known secret value and every key-shaped token replaced."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    return KEY_PATTERN.sub(REDACTED, text)


class _RedactingRecords:
    """A log record factory whose records carry the redacted message (every handler sees it)."""

    def __init__(self, make_record):
        self.make_record = make_record

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a bad format: logging reports it on emit
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record


def redact_logs() -> None:
    """From now on, every log record of this process is redacted (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecords):
        logging.setLogRecordFactory(_RedactingRecords(factory))


def refuse_keys_in_overrides(args: Iterable[str]) -> None:
    """Stop before Hydra saves the overrides in .hydra/ when one of them holds a key."""
    for arg in args:
        key, equals, value = arg.partition("=")
        if not equals or key.startswith("-"):
            continue
        name = key.lstrip("+~")
        for choice in value.split(","):  # a multirun sweep lists several
            choice = choice.strip().strip("'\"")
            if KEY_PATTERN.search(choice) or (name.endswith("api_key_env") and choice
                                              and looks_like_key(choice)):
                raise UserError(
                    f"{name}={redact(choice, [choice])} looks like an API key; keys are read only "
                    "from environment variables, so nothing was run or written. Put the key in "
                    f"one (export {OPENAI_KEY_ENV}=...) and pass its name "
                    f"(backend.api_key_env={OPENAI_KEY_ENV}). Consider the key leaked in your "
                    "shell history and rotate it.")


def check_key_env(field: str, env_name: str) -> None:
    """A config file's api_key_env must name a variable, not hold the key itself."""
    if looks_like_key(env_name):
        raise UserError(f"{field}={redact(env_name, [env_name])} looks like an API key, not the "
                        "name of an environment variable; put the key in a variable and give "
                        f"its name (e.g. {field}={OPENAI_KEY_ENV}). Rotate the key: it may have "
                        "been saved in .hydra/config.yaml.")


def check_key_destination(env_name: str, destination: str | None, allowed: bool) -> None:
    """Refuse to send the OpenAI key (OPENAI_API_KEY's value) to a host other than OpenAI's."""
    openai_key = os.environ.get(OPENAI_KEY_ENV)
    key = os.environ.get(env_name)
    if not destination or allowed or not openai_key or key != openai_key:
        return
    host = (urlsplit(destination).hostname or "").lower()
    if host in OPENAI_HOSTS:
        return
    raise UserError(
        f"the key in {env_name} is your OpenAI key ({OPENAI_KEY_ENV}) but would be sent to "
        f"'{host or destination}', which is not OpenAI's API; nothing was sent. Give that "
        "server its own key variable (backend.api_key_env=NAME), or, if it is your own proxy "
        "to OpenAI, set backend.allow_key_to_custom_base_url=true.")
