"""The async generation engine: `concurrency` workers pull prompts from a stream, each prompt is
encoded, sent with retries and backoff under rate limits, parsed (with format-fixing calls), and
its one final record handed to the log writer the moment it is finished.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from mmgen.vlm.client import ChatClient, Completion
from mmgen.vlm.cost import request_tokens
from mmgen.vlm.errors import FatalBackendError, RequestFailed, classify, retry_delay
from mmgen.vlm.images import ImageEncoder, ImageError
from mmgen.vlm.limits import Budget, RateLimiter
from mmgen.vlm.messages import (
    ReplyFormatError,
    build_messages,
    format_fix_messages,
    image_paths,
    parse_items,
    request_body,
)

log = logging.getLogger(__name__)
MISMATCH_LOGGED = 10  # item-count mismatches logged one by one before only counting them


@dataclass
class Settings:
    concurrency: int
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    timeout_s: float
    format_fix_tries: int
    temperature: float | None
    max_tokens: int | None
    request_model: str  # `model` in the request body (the Azure deployment)
    record_model: str  # `model` in the records
    mode: dict  # the mode config as a plain dict
    wanted: int  # items asked per prompt (min_gen_per_candidate)
    detail: str  # image detail
    encode_threads: int = 2
    progress: bool = True


class Engine:
    """Runs prompts through a ChatClient; `write` receives each prompt's final record."""

    def __init__(self, chat: ChatClient, encoder: ImageEncoder, settings: Settings,
                 limiter: RateLimiter, budget: Budget, write: Callable[[dict], None]):
        self.chat, self.encoder, self.settings = chat, encoder, settings
        self.limiter, self.budget, self.write = limiter, budget, write
        self.rng = random.Random(0)  # jitter only; results never depend on it
        self.status: Counter[str] = Counter()  # final records written, by status
        self.errors: Counter[str] = Counter()  # final error class of failed prompts
        self.call_errors: Counter[str] = Counter()  # every failed HTTP call, by class
        self.calls = self.retries = self.format_fixes = self.mismatches = 0
        self.tokens_in = self.tokens_out = 0
        self.cost_usd = 0.0
        self.fatal: FatalBackendError | None = None
        self._completion_mean = 150.0 * settings.wanted  # running estimate for budgeting
        self._estimated_tokens = self._reported_tokens = 0  # calibrates prompt token estimates
        self._bar: tqdm | None = None

    async def run(self, prompts: Iterator[dict], total: int) -> dict:
        """Process every prompt (or until the budget is reached); returns this run's stats."""
        started = time.perf_counter()
        self._bar = tqdm(total=total, desc="generate", unit="prompt", mininterval=1.0,
                         disable=not self.settings.progress, dynamic_ncols=True)
        executor = ThreadPoolExecutor(max_workers=max(1, self.settings.encode_threads),
                                      thread_name_prefix="mmgen-encode")
        try:
            workers = [self._worker(prompts, executor) for _ in range(self.settings.concurrency)]
            await asyncio.gather(*workers)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            self._bar.close()
        if self.fatal:
            raise self.fatal
        seconds = time.perf_counter() - started
        finished = sum(self.status.values())
        return {"finished": finished, "ok": self.status["ok"], "failed": self.status["failed"],
                "errors": dict(self.errors), "http_calls": self.calls, "retries": self.retries,
                "call_errors": dict(self.call_errors), "format_fixes": self.format_fixes,
                "count_mismatch": self.mismatches, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost_usd": round(self.cost_usd, 6),
                "budget_reached": self.budget.reached, "seconds": round(seconds, 3),
                "prompts_per_s": round(finished / seconds, 2) if seconds else None,
                "calls_per_s": round(self.calls / seconds, 2) if seconds else None}

    async def _worker(self, prompts: Iterator[dict], executor: ThreadPoolExecutor) -> None:
        while not (self.fatal or self.budget.reached):
            prompt = next(prompts, None)  # single-threaded loop: no lock needed
            if prompt is None:
                return
            try:
                record = await self._generate(prompt, executor)
            except FatalBackendError as err:
                self.fatal = self.fatal or err
                return
            if record is None:  # budget reached before it was sent
                return
            self.write(record)
            self._count(record)

    def _count(self, record: dict) -> None:
        self.status[record["status"]] += 1
        if record["status"] == "failed":
            self.errors[record["error_class"]] += 1
        self._bar.update(1)
        self._bar.set_postfix_str(f"failed={self.status['failed']} cost=${self.cost_usd:.4f}",
                                  refresh=False)

    async def _encode(self, prompt: dict, executor: ThreadPoolExecutor) -> list:
        loop = asyncio.get_running_loop()
        images = []
        for path in image_paths(prompt):
            image = self.encoder.cached(path)
            if image is None:
                image = await loop.run_in_executor(executor, self.encoder.encode, path)
            images.append(image)
        return images

    async def _generate(self, prompt: dict, executor: ThreadPoolExecutor) -> dict | None:
        record = {"id": prompt["id"], "status": "failed", "reply": None, "items": [],
                  "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "attempts": 0,
                  "error_class": None, "error": None, "model": self.settings.record_model}
        try:
            images = await self._encode(prompt, executor)
        except ImageError as err:
            return {**record, "error_class": "image", "error": str(err)}
        settings = self.settings
        original = messages = build_messages(prompt, images, settings.detail)
        tokens = request_tokens(messages, [image.tokens for image in images])
        reserved = self.budget.reserve(int(tokens * self._prompt_scale()),
                                       int(self._completion_mean))
        if reserved is None:
            return None
        usage = record["usage"]
        try:
            for fix in range(settings.format_fix_tries + 1):
                body = request_body(settings.request_model, messages, settings.temperature,
                                    settings.max_tokens)
                completion = await self._call(body, tokens, record)
                self._estimated_tokens += tokens
                self._reported_tokens += completion.prompt_tokens
                usage["prompt_tokens"] += completion.prompt_tokens
                usage["completion_tokens"] += completion.completion_tokens
                record["reply"] = completion.text
                try:
                    items, received = parse_items(completion.text, settings.mode, settings.wanted)
                except ReplyFormatError as err:
                    if fix == settings.format_fix_tries:
                        return {**record, "error_class": "parse",
                                "error": f"{err} (after {fix} format-fixing calls)"}
                    self.format_fixes += 1
                    messages = format_fix_messages(original, completion.text or "", str(err),
                                                   settings.mode["reply_keys"], settings.wanted)
                    tokens = request_tokens(messages, [image.tokens for image in images])
                    continue
                self._note_count(prompt["id"], received)
                return {**record, "status": "ok", "items": items}
        except RequestFailed as failure:
            return {**record, "error_class": failure.error_class, "error": str(failure)}
        finally:
            cost = self.budget.settle(reserved, usage["prompt_tokens"], usage["completion_tokens"])
            self.cost_usd += cost
            self.tokens_in += usage["prompt_tokens"]
            self.tokens_out += usage["completion_tokens"]
            if usage["completion_tokens"]:
                self._completion_mean += 0.05 * (usage["completion_tokens"] - self._completion_mean)

    def _prompt_scale(self) -> float:
        """Reported / estimated prompt tokens so far: corrects the estimate for budgeting."""
        if not self._estimated_tokens or not self._reported_tokens:
            return 1.0
        return self._reported_tokens / self._estimated_tokens

    async def _call(self, body: dict, tokens: int, record: dict) -> Completion:
        """One logical call: up to max_attempts HTTP attempts with backoff and Retry-After."""
        settings = self.settings
        for attempt in range(1, settings.max_attempts + 1):
            await self.limiter.acquire(tokens + (settings.max_tokens or 0))
            record["attempts"] += 1
            self.calls += 1
            try:
                return await self.chat.complete(body)  # the client enforces timeout_s
            except Exception as err:
                failure = classify(err)
                self.call_errors[failure.error_class] += 1
                if not failure.retryable or attempt == settings.max_attempts:
                    raise RequestFailed(failure.error_class, f"{failure} (attempt {attempt} of "
                                        f"{settings.max_attempts})") from err
                self.retries += 1
                await asyncio.sleep(retry_delay(attempt, settings.backoff_base_s,
                                                settings.backoff_max_s, failure.retry_after,
                                                self.rng))
        raise AssertionError("unreachable")

    def _note_count(self, prompt_id: str, received: int) -> None:
        if received == self.settings.wanted:
            return
        self.mismatches += 1
        if self.mismatches <= MISMATCH_LOGGED:
            action = "dropped the extra" if received > self.settings.wanted else "kept them"
            log.warning("prompt %s: asked for %d items, got %d; %s%s", prompt_id,
                        self.settings.wanted, received, action,
                        " (further mismatches are only counted in stats.json)"
                        if self.mismatches == MISMATCH_LOGGED else "")
