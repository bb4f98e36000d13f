"""Rate limits counted in Redis (lua/rate_limit.lua: INCR + PEXPIRE in one atomic call, a fixed
window per subject). Only this module and `lua/` speak Redis for limits. When Redis does not
answer, the request is let through: a limit protects the service, it must never take it down.

A booking's count can ride on its seat claim (`pending`: claim_seats.lua counts it first, in
the same round trip, on one Redis; on a cluster the two calls run at once), so a buyer pays
one Redis round trip for both."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from cinema.holds import REDIS_FAILURES, ClaimCount, RedisClient, lua_source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int = 0  # whole seconds until the window resets (when refused)
    checked: bool = True  # False: Redis did not answer and the request was let through


ALLOW = Verdict(allowed=True)
UNCHECKED = Verdict(allowed=True, checked=False)
# What the caller makes of a verdict: the exception that refuses the request, or None.
Judge = Callable[[Verdict], Exception | None]


def _verdict(hits: int, window_left_ms: int, limit: int) -> Verdict:
    if hits <= limit:
        return ALLOW
    return Verdict(allowed=False, retry_after_seconds=max(1, math.ceil(window_left_ms / 1000)))


class PendingHit(ClaimCount):
    """One request's count, not sent yet: a seat claim may send it (RedisSeatHolds.claim),
    otherwise `admit` sends it alone. `admit` then raises what `judge` makes of the verdict."""

    def __init__(
        self, limiter: RedisRateLimiter, limit_name: str, key: str, limit: int, judge: Judge
    ) -> None:
        super().__init__(key, limit, limiter.window_ms)
        self._limiter = limiter
        self.limit_name = limit_name
        self._judge = judge
        self.verdict: Verdict | None = None
        self._judged = False
        self._refusal: Exception | None = None

    @property
    def decided(self) -> bool:
        return self.verdict is not None

    def counted(self, hits: int, window_left_ms: int) -> bool:
        self.verdict = _verdict(hits, window_left_ms, self.limit)
        return self.verdict.allowed

    def failed(self, exc: BaseException) -> None:
        self._limiter.failed(self.limit_name, exc)
        self.verdict = UNCHECKED

    async def decide(self) -> None:
        if self.verdict is None:
            self.verdict = await self._limiter.count(self)

    async def admit(self) -> None:
        if not self._judged:
            await self.decide()
            assert self.verdict is not None
            self._refusal, self._judged = self._judge(self.verdict), True
        if self._refusal is not None:
            raise self._refusal


class RedisRateLimiter:
    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str,
        window_seconds: float = 60.0,
        retry_after_failure_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self.window_ms = int(window_seconds * 1000)
        self._script = client.register_script(lua_source("count_hit.lua", "rate_limit.lua"))
        # After a failure, skip Redis for a moment instead of paying its timeout per request.
        self._retry_after_failure = retry_after_failure_seconds
        self._down_until = 0.0

    async def hit(self, limit_name: str, subject: str, limit: int) -> Verdict:
        """Count one request of `subject` against `limit` per window; 0 means no limit."""
        if limit <= 0:
            return ALLOW
        return await self.count(self.pending(limit_name, subject, limit, lambda _: None))

    def pending(self, limit_name: str, subject: str, limit: int, judge: Judge) -> PendingHit:
        """The request's count against `limit` (> 0), to be sent with its seat claim or alone."""
        key = f"{self._prefix}ratelimit:{limit_name}:{subject}"
        return PendingHit(self, limit_name, key, limit, judge)

    async def count(self, hit: PendingHit) -> Verdict:
        """Send `hit` in a round trip of its own."""
        if time.monotonic() < self._down_until:
            return UNCHECKED
        try:
            hits, window_left_ms = await self._script(keys=[hit.key], args=[self.window_ms])
        except REDIS_FAILURES as exc:
            self.failed(hit.limit_name, exc)
            return UNCHECKED
        return _verdict(int(hits), int(window_left_ms), hit.limit)

    def failed(self, limit_name: str, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_after_failure
        log.warning("rate limit %s not checked, letting requests through: %s", limit_name, exc)
