"""Rate limits counted in Redis (lua/rate_limit.lua: INCR + PEXPIRE in one atomic call, a fixed
window per subject). Only this module and `lua/` speak Redis for limits. When Redis does not
answer, the request is let through: a limit protects the service, it must never take it down."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from cinema.holds import LUA_DIR, REDIS_FAILURES, RedisClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int = 0  # whole seconds until the window resets (when refused)
    checked: bool = True  # False: Redis did not answer and the request was let through


ALLOW = Verdict(allowed=True)
UNCHECKED = Verdict(allowed=True, checked=False)


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
        self._window_ms = int(window_seconds * 1000)
        self._script = client.register_script((LUA_DIR / "rate_limit.lua").read_text())
        # After a failure, skip Redis for a moment instead of paying its timeout per request.
        self._retry_after_failure = retry_after_failure_seconds
        self._down_until = 0.0

    async def hit(self, limit_name: str, subject: str, limit: int) -> Verdict:
        """Count one request of `subject` against `limit` per window; 0 means no limit."""
        if limit <= 0:
            return ALLOW
        if time.monotonic() < self._down_until:
            return UNCHECKED
        key = f"{self._prefix}ratelimit:{limit_name}:{subject}"
        try:
            hits, ttl_ms = await self._script(keys=[key], args=[self._window_ms])
        except REDIS_FAILURES as exc:
            self._down_until = time.monotonic() + self._retry_after_failure
            log.warning("rate limit %s not checked, letting requests through: %s", limit_name, exc)
            return UNCHECKED
        if int(hits) <= limit:
            return ALLOW
        return Verdict(allowed=False, retry_after_seconds=max(1, math.ceil(int(ttl_ms) / 1000)))
