"""Classify what went wrong with a request, and decide whether and when to try again."""
from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import random
import time

import openai

from mmgen.errors import UserError
from mmgen.vlm.secrets import redact

# error_class values in generations.jsonl (DESIGN.md, "Generations log")
ERROR_CLASSES = ("rate_limit", "server", "timeout", "connection", "bad_request", "parse", "image")
RETRYABLE = {"rate_limit", "server", "timeout", "connection"}
# statuses that mean the whole run is misconfigured (key, permissions, model name): stop at once
FATAL_STATUSES = {401: "the API key was refused", 403: "access is denied",
                  404: "the model or endpoint does not exist"}


class RequestFailed(Exception):
    """One HTTP call failed; `error_class` says how, `retry_after` is the server's wait (s)."""

    def __init__(self, error_class: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.error_class = error_class
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE


class FatalBackendError(UserError):
    """The backend refuses every request (bad key, no access, unknown model); the run stops."""


def parse_retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date), else None.
    A value that is neither (or not finite) is ignored: it must not crash or stall the run."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            seconds = float(value) / 1000
            if math.isfinite(seconds):
                return max(0.0, seconds)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": an HTTP date is always GMT
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, parsed.timestamp() - time.time())


def classify(error: BaseException) -> RequestFailed:
    """Map an exception from the client to a RequestFailed (raise FatalBackendError if fatal).
    Messages are redacted: a server may echo the key in its error body."""
    if isinstance(error, RequestFailed):
        return error
    if isinstance(error, (asyncio.TimeoutError, openai.APITimeoutError)):
        return RequestFailed("timeout", "the request timed out")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error
        return RequestFailed("connection",
                             redact(f"connection failed: {type(cause).__name__}: {cause}"))
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = f"HTTP {status}: {_short(error.message)}"
        if status in FATAL_STATUSES:
            # from None: the SDK's error holds the unredacted body, which a traceback would show
            raise FatalBackendError(f"{FATAL_STATUSES[status]} ({message}); check backend.model, "
                                    "backend.base_url and the API key variable") from None
        if status == 429:
            return RequestFailed("rate_limit", message, parse_retry_after(error.response.headers))
        if status >= 500 or status in (408, 409):
            return RequestFailed("server", message, parse_retry_after(error.response.headers))
        return RequestFailed("bad_request", message)
    if isinstance(error, (ValueError, KeyError, IndexError, TypeError)):
        # a 200 whose body is not a chat completion: the server misbehaved, try again
        return RequestFailed("server",
                             redact(f"unreadable response: {type(error).__name__}: {error}"))
    if isinstance(error, (ConnectionError, OSError)):
        return RequestFailed("connection",
                             redact(f"connection failed: {type(error).__name__}: {error}"))
    raise error  # a bug in mmgen: let it surface


def retry_delay(attempt: int, base_s: float, max_s: float, retry_after: float | None,
                rng: random.Random) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential with full jitter, never less
    than the server's Retry-After."""
    backoff = min(max_s, base_s * 2 ** (attempt - 1))
    delay = backoff * (0.5 + 0.5 * rng.random())
    return max(delay, retry_after or 0.0)


def _short(text: str, limit: int = 300) -> str:
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit] + "..."
