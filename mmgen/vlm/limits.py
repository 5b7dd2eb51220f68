"""Rate limits (requests and tokens per minute, as token buckets) and the cost budget."""
from __future__ import annotations

import asyncio
import time

from mmgen.vlm.cost import Prices


class TokenBucket:
    """Refills at `rate_per_s` up to `capacity`; take(n) waits until n can be taken.

    A request larger than the bucket waits for a full bucket and takes it all (the level goes
    negative), so one oversized request is slowed, never starved.
    """

    def __init__(self, rate_per_s: float, capacity: float):
        self.rate_per_s = rate_per_s
        self.capacity = max(capacity, 1.0)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()  # first come, first served

    async def take(self, amount: float) -> None:
        async with self._lock:
            needed = min(amount, self.capacity)
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.updated) * self.rate_per_s)
                self.updated = now
                if self.level >= needed:
                    self.level -= amount
                    return
                await asyncio.sleep((needed - self.level) / self.rate_per_s)


class RateLimiter:
    """Optional requests-per-minute and tokens-per-minute limits (one second of burst)."""

    def __init__(self, rpm: float | None, tpm: float | None):
        self.requests = TokenBucket(rpm / 60, rpm / 60) if rpm else None
        self.tokens = TokenBucket(tpm / 60, tpm / 60) if tpm else None

    async def acquire(self, tokens: int) -> None:
        if self.requests:
            await self.requests.take(1)
        if self.tokens:
            await self.tokens.take(tokens)


class Budget:
    """Tracks spend; refuses new prompts once spent + reserved in-flight estimates reach the cap."""

    def __init__(self, prices: Prices, max_cost_usd: float | None, spent_usd: float = 0.0):
        self.prices = prices
        self.max_cost_usd = max_cost_usd
        self.spent_usd = spent_usd  # includes earlier runs' records in the log
        self.reserved_usd = 0.0
        self.reached = False

    def reserve(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Reserve an estimate for a new prompt; None (and reached=True) if it would overspend."""
        estimate = self.prices.cost(prompt_tokens, completion_tokens)
        if self.max_cost_usd is not None and (
                self.spent_usd + self.reserved_usd + estimate > self.max_cost_usd):
            self.reached = True
            return None
        self.reserved_usd += estimate
        return estimate

    def settle(self, reserved: float, prompt_tokens: int, completion_tokens: int) -> float:
        """Replace a reservation with the actual cost; returns that cost."""
        actual = self.prices.cost(prompt_tokens, completion_tokens)
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += actual
        return actual
