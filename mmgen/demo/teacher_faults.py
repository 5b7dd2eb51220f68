"""Deterministic fault injection for the demo teacher, and its HTTP response framing.

Whether a request fails, and how, depends only on (seed, request body, how many times that same
body arrived before). So a run sees the same faults whatever order its requests arrive in, and a
retry of a failed request gets a fresh draw.
"""
from __future__ import annotations

import hashlib
import json
import random
import struct
import threading
import time

# Order matters only for how one uniform draw is split into intervals.
FAULT_KINDS = ("rate_limit", "server", "malformed", "stall", "drop")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 429: "Too Many Requests", 500: "Internal Server Error"}


class FaultPlan:
    """Draws the fault (or None) for each arriving request body."""

    def __init__(self, seed: int, rates: dict[str, float]):
        unknown = set(rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        for kind, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {kind} is {rate}; it must lie in [0, 1]")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {sum(rates.values()):.3f}; they must sum to <= 1")
        self.seed = seed
        self.rates = {kind: float(rates.get(kind, 0.0)) for kind in FAULT_KINDS}
        self._seen: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def draw(self, body_digest: bytes) -> str | None:
        """Fault kind for the next arrival of the body with this digest, or None for none."""
        with self._lock:
            occurrence = self._seen.get(body_digest, 0)
            self._seen[body_digest] = occurrence + 1
        key = struct.pack("<qq", self.seed, occurrence) + body_digest
        draw = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / 2.0**64
        threshold = 0.0
        for kind in FAULT_KINDS:
            threshold += self.rates[kind]
            if draw < threshold:
                return kind
        return None


def malformed_reply(valid_reply: str, body_digest: bytes) -> str:
    """A reply a JSON parser rejects: the valid one truncated, prose-wrapped or in Python syntax."""
    style = body_digest[0] % 3
    if style == 0:
        broken = valid_reply[: max(1, len(valid_reply) * 2 // 3)]
    elif style == 1:
        broken = f"Sure! Here are the items you asked for:\n{valid_reply}\nAnything else?"
    else:  # Python syntax: single-quoted strings, which JSON refuses
        broken = valid_reply.replace('"', "'")
    try:
        json.loads(broken)
    except ValueError:
        return broken
    return "[" + broken  # still parsed (e.g. a reply without quotes): unbalance it


def seeded_rng(*parts: str | bytes) -> random.Random:
    """A random.Random seeded from a stable hash of `parts` (not Python's salted hash())."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return random.Random(int.from_bytes(digest.digest(), "little"))


def error_body(message: str, kind: str, code: str | None = None) -> dict:
    """An error payload shaped like the OpenAI API's."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def http_response(status: int, payload: dict, headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 keep-alive response carrying `payload` as JSON."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def fault_response(kind: str, retry_after_s: float) -> bytes | None:
    """The response for a fault that replaces the answer; None means drop the connection."""
    if kind == "rate_limit":
        return http_response(
            429, error_body(f"Rate limit reached (injected by the demo teacher); retry after "
                            f"{retry_after_s:g} s", "requests", "rate_limit_exceeded"),
            {"retry-after": f"{retry_after_s:g}", "retry-after-ms": f"{retry_after_s * 1000:.0f}"})
    if kind == "server":
        return http_response(500, error_body("The server had an error while processing your "
                                             "request (injected by the demo teacher)",
                                             "server_error"))
    return None


def completion_response(content: str, prompt_tokens: int, model: str, reply_id: str) -> bytes:
    """A 200 response in the OpenAI chat completion shape."""
    completion_tokens = max(1, len(content) // 4)
    return http_response(200, {
        "id": f"chatcmpl-demo-{reply_id}", "object": "chat.completion",
        "created": int(time.time()), "model": model, "system_fingerprint": "mmgen-demo-teacher",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": None}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })
