"""The caller's current role, read from the accounts store and kept for a few seconds.

A token says who the caller is; what they may do is asked here on every staff request, so a
demoted or deleted account loses access within `ttl_seconds` (ROLE_CACHE_SECONDS) in every
process, whatever its token says."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from cinema.auth.model import Role

MAX_ENTRIES = 4096

RoleLookup = Callable[[int], Awaitable[Role | None]]


class RoleCache:
    def __init__(
        self,
        lookup: RoleLookup,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[int, tuple[Role | None, float]] = {}  # user -> (role, read at)

    async def role_of(self, user_id: int) -> Role | None:
        """The account's role, None if it does not exist; at most `ttl_seconds` old."""
        now = self._clock()
        cached = self._entries.get(user_id)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        role = await self._lookup(user_id)
        if self._ttl > 0:
            if len(self._entries) >= MAX_ENTRIES and user_id not in self._entries:
                del self._entries[next(iter(self._entries))]  # the oldest entry
            self._entries[user_id] = (role, now)
        return role

    def forget(self, user_id: int) -> None:
        """This process changed the role: its next request reads it afresh."""
        self._entries.pop(user_id, None)
