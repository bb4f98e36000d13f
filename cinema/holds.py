"""Seat holds in Redis: the fast filter in front of PostgreSQL. Only this module and `lua/`
speak Redis for holds. Redis may be wrong or empty; callers must never trust it over the
database, only use it to turn losers away early."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from importlib.resources import files

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cinema.booking.ports import HoldClaim

log = logging.getLogger(__name__)

LUA_DIR = files("cinema._lua")  # lua/ at the top level, installed inside the package
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def seat_key(prefix: str, screening_id: int, seat_id: int) -> str:
    # The hash tag keeps one screening's seats in one cluster slot, so a claim never spans slots.
    return f"{prefix}{{screening:{screening_id}}}:seat:{seat_id}"


POOL_SIZE = 64


def create_redis(url: str, timeout: float, max_connections: int = POOL_SIZE) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,  # waiting for a free pooled connection under load is not "Redis is down"
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return aioredis.Redis(connection_pool=pool)


class RedisSeatHolds:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        grace_seconds: int,
        retry_after_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._grace_ms = grace_seconds * 1000
        self._claim = client.register_script((LUA_DIR / "claim_seats.lua").read_text())
        self._release = client.register_script((LUA_DIR / "release_seats.lua").read_text())
        self._mark_sold = client.register_script((LUA_DIR / "mark_sold.lua").read_text())
        # After a connection failure, skip Redis for a moment instead of paying a
        # connect timeout on every request while it is down.
        self._retry_after = retry_after_seconds
        self._down_until = 0.0

    async def load_scripts(self) -> None:
        try:
            for script in (self._claim, self._release, self._mark_sold):
                await self._client.script_load(script.script)
        except RedisError as exc:
            log.warning("could not preload seat scripts (%s); they load on first use", exc)

    async def open_connections(self, count: int = POOL_SIZE) -> None:
        """Fill the connection pool at start-up. Otherwise the first onsale burst opens them
        all at once, on a busy CPU, where a connect slower than the Redis timeout counts as
        "Redis is down" and sends the next second's requests to PostgreSQL unfiltered."""
        try:
            await asyncio.gather(*(self._client.ping() for _ in range(count)))
        except RedisError as exc:
            log.warning("could not open the redis pool (%s); connections open on first use", exc)

    def _keys(self, screening_id: int, seat_ids: Sequence[int]) -> list[str]:
        return [seat_key(self._prefix, screening_id, s) for s in seat_ids]

    async def claim(
        self, screening_id: int, seat_ids: Sequence[int], token: str, ttl_seconds: int
    ) -> HoldClaim:
        if time.monotonic() < self._down_until:
            return HoldClaim(claimed=False, reachable=False)
        try:
            taken = await self._claim(
                keys=self._keys(screening_id, seat_ids),
                args=[token, ttl_seconds * 1000, self._grace_ms],
            )
        except _UNREACHABLE as exc:
            self._down_until = time.monotonic() + self._retry_after
            log.warning("redis unreachable for seat claim: %s", exc)
            return HoldClaim(claimed=False, reachable=False)
        except RedisError as exc:
            log.warning("redis error on seat claim: %s", exc)
            return HoldClaim(claimed=False, reachable=False)
        if taken:
            return HoldClaim(claimed=False, taken=tuple(seat_ids[i - 1] for i in taken))
        return HoldClaim(claimed=True)

    async def release(self, screening_id: int, seat_ids: Sequence[int], token: str) -> None:
        await self._release(keys=self._keys(screening_id, seat_ids), args=[token])

    async def mark_sold(self, screening_id: int, seat_ids: Sequence[int]) -> None:
        if seat_ids:
            await self._mark_sold(keys=self._keys(screening_id, seat_ids))
