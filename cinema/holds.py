"""Seat holds in Redis: the fast filter in front of PostgreSQL. Only this module and `lua/`
speak Redis for holds. Redis may be wrong or empty; callers must never trust it over the
database, only use it to turn losers away early."""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MovedError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cinema.background import cancel_until_done
from cinema.booking.ports import Admission, HeldSeats, HoldClaim, PlacesCheck

log = logging.getLogger(__name__)

LUA_DIR = files("cinema._lua")  # lua/ at the top level, installed inside the package
# redis-py's cluster client raises RedisClusterException (not a RedisError) for a slot no
# live node serves: for us that is Redis being unreachable, like a refused connection.
# redis-py 8.1 lets a transport's internals leak when it writes on a connection closed under
# it (redis/redis-py#4287: TypeError/AttributeError; RuntimeError from uvloop's closed
# transport). Seen here on the cluster client under a 1,000-way burst: a lost connection.
_TRANSPORT_LEAKS: tuple[type[Exception], ...] = (AttributeError, TypeError, RuntimeError)
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)
REDIS_FAILURES: tuple[type[Exception], ...] = (*REDIS_ERRORS, OSError, *_TRANSPORT_LEAKS)
_UNREACHABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    RedisClusterException,
    *_TRANSPORT_LEAKS,
)
# A plain client, or (REDIS_CLUSTER=1) a Redis Cluster client: the same commands.
RedisClient = aioredis.Redis | RedisCluster
# mark_sold.lua writes "sold|": released as if "sold" were its holder's token.
SOLD_HOLDER = "sold"
# How long an unreachable Redis is retried for a refund's sold markers (the worker's sweep
# clears those of the last 15 minutes again; docs/concurrency.md R.3).
SOLD_RELEASE_RETRY = timedelta(minutes=10)


def lua_source(*names: str) -> str:
    """The script made of these lua/ files, in order (count_hit.lua defines a function the
    counting scripts call)."""
    return "\n".join((LUA_DIR / name).read_text() for name in names)


def seat_key(prefix: str, screening_id: int, seat_id: int) -> str:
    # The hash tag keeps one screening's seats in one cluster slot, so a claim never spans slots.
    return f"{prefix}{{screening:{screening_id}}}:seat:{seat_id}"


def promo_exhausted_key(prefix: str, promo_id: int) -> str:
    # A code spans screenings: its own hash tag, checked by its own command.
    return f"{prefix}{{promo:{promo_id}}}:exhausted"


def sold_out_key(prefix: str, screening_id: int) -> str:
    """How many general-admission places PostgreSQL last said were free (a short TTL)."""
    return f"{prefix}{{screening:{screening_id}}}:soldout"


POOL_SIZE = 64
# Releases that found Redis unreachable are retried this often (doubling up to the cap).
RETRY_FIRST_DELAY = 0.25
RETRY_MAX_DELAY = 2.0
SWEEP_PIPELINE = 500  # release scripts per round trip in release_many


# The cluster client holds connections per node and refuses (MaxConnectionsError) rather
# than waits past its cap: a burst must never reach it.
CLUSTER_MAX_CONNECTIONS_PER_NODE = 1024
CLUSTER_RETRIES = 1
# MOVED, then ASK at the new owner, is the longest honest chain while a slot moves.
CLUSTER_MAX_REDIRECTS = 3
# A command the cluster cannot run now because its slot is moving (TRYAGAIN: one screening's
# keys split over two nodes; ClusterError: too many redirects). Nothing is down: only this
# command fails, so nothing is marked down, and a release is retried shortly.
_RESHARDING: tuple[type[Exception], ...] = (TryAgainError, ClusterError)


class RedirectingRedisCluster(RedisCluster):
    """redis-py's cluster client with a redirect loop that holds up while slots move
    (resharding); tasks/queue.py's Taskiq clients use it too."""

    async def _execute_command(self, target_node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        """One command on its node, following at most CLUSTER_MAX_REDIRECTS redirects.

        Replaces redis-py 8.1's loop, which during a resharding (measured with
        tests/test_cluster.py's slot migration): sends ASKING and the redirected command as
        two pooled commands, so under concurrency they go out on different connections and
        the target answers MOVED back to the source, until "TTL exhausted" (16 hops); retries
        TRYAGAIN 16 times with sleeps (0.4 s); and on every fifth MOVED disconnects every
        connection of the client, which failed other screenings' commands in flight. Here
        ASKING shares the command's connection, MOVED patches the one slot, and TRYAGAIN is
        the caller's at once (the seat filter falls back to PostgreSQL)."""
        asking = False
        for _ in range(CLUSTER_MAX_REDIRECTS + 1):
            try:
                if asking:
                    return await _asking(target_node, *args, **kwargs)
                return await target_node.execute_command(*args, **kwargs)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # As redis-py does: drop the node's idle connections, ask it last when the
                # slot map is read again (the retry in execute_command does that).
                target_node.update_active_connections_for_reconnect()
                await target_node.disconnect_free_connections()
                self.nodes_manager.move_node_to_end_of_cached_nodes(target_node.name)
                exc.last_failed_node_name = target_node.name  # type: ignore[union-attr]
                self._initialize = True
                raise
            except (ClusterDownError, SlotNotCoveredError):
                # A failover: read the slot map again on the retry (redis-py's way).
                await self.aclose()
                await asyncio.sleep(0.25)
                raise
            except MovedError as exc:  # the slot has a new owner: patch that slot only
                await self.nodes_manager.move_slot(exc)
                target_node = self.nodes_manager.get_node_from_slot(exc.slot_id)
                asking = False
            except AskError as exc:  # this key has moved already, its slot not yet
                node = self.get_node(host=exc.host, port=exc.port)
                if node is None:
                    raise ClusterError(f"ASK to an unknown node {exc.host}:{exc.port}") from exc
                target_node, asking = node, True
        raise ClusterError(f"more than {CLUSTER_MAX_REDIRECTS} redirects for {args[0]!r}")


class BoundedRedisCluster(RedirectingRedisCluster):
    """A cluster client with at most `in_flight` commands out at once per process; the rest
    wait their turn, as on one Redis' BlockingConnectionPool. Unbounded, a 1,000-way burst
    opened a connection per request to the hot screening's node (a handshake each: 8x the
    API CPU of one Redis, measured with bench/scale.py), and past max_connections the client
    refuses instead of waiting."""

    def __init__(self, *args: Any, in_flight: int = POOL_SIZE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = asyncio.Semaphore(in_flight)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._in_flight:
            return await super().execute_command(*args, **kwargs)


async def _asking(node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
    """ASKING and the command written together on one connection: ASKING only lets the
    next command on its own connection into an importing slot."""
    connection = node.acquire_connection()
    try:
        await node.disconnect_if_needed(connection)
        await connection.send_packed_command(connection.pack_commands([("ASKING",), args]))
        try:
            await node.parse_response(connection, "ASKING")
        except BaseException:
            await connection.disconnect()  # the command's reply is still unread
            raise
        return await node.parse_response(connection, args[0], **kwargs)
    finally:
        node.release(connection)


def create_redis(
    url: str, timeout: float, max_connections: int = POOL_SIZE, *, cluster: bool = False
) -> RedisClient:
    if cluster:
        return BoundedRedisCluster.from_url(
            url,
            in_flight=max_connections,
            max_connections=CLUSTER_MAX_CONNECTIONS_PER_NODE,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One retry, after the slot map is re-read (a failover that is over by then
            # lands on the new master). redis-py's default, 10 retries with backoff, waits
            # out a whole failover (seconds) on the request path instead of falling back.
            retry=Retry(NoBackoff(), CLUSTER_RETRIES),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,  # waiting for a free pooled connection under load is not "Redis is down"
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return aioredis.Redis(connection_pool=pool)


async def close_redis(client: RedisClient) -> None:
    if isinstance(client, RedisCluster):
        await client.aclose()
    else:
        # A client given its pool does not close it on aclose() without True.
        await client.aclose(True)


async def run_scripts(
    client: RedisClient, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]
) -> list[Any]:
    """Run `script` once per (keys, args) in one round trip: pipelined on one Redis; on a
    cluster, whose pipelines refuse EVALSHA, concurrently (each call on its slot's node)."""
    if isinstance(client, RedisCluster):
        return list(await asyncio.gather(*(script(keys=k, args=a) for k, a in calls)))
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            await script(keys=keys, args=args, client=pipe)
        return list(await pipe.execute())


class ClaimCount(ABC):
    """A request's count against a rate limit (lua/rate_limit.lua's fixed window), which a
    seat claim may make in its own round trip: claim_seats.lua counts first and claims
    nothing for a refused request. Decided once: by `counted` or `failed` (the claim made
    it) or by `decide` (the limiter sends it alone). cinema/ratelimit.py makes these."""

    def __init__(self, key: str, limit: int, window_ms: int) -> None:
        self.key = key
        self.limit = limit
        self.window_ms = window_ms

    @property
    @abstractmethod
    def decided(self) -> bool: ...

    @abstractmethod
    def counted(self, hits: int, window_left_ms: int) -> bool:
        """Redis counted it (`hits` in this window): True if the request is within the limit."""

    @abstractmethod
    def failed(self, exc: BaseException) -> None:
        """Redis did not answer: the request is let through, unchecked."""

    @abstractmethod
    async def decide(self) -> None:
        """Count it in a round trip of its own (never raises)."""


class RedisSeatHolds:
    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str,
        grace_seconds: int,
        retry_after_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._grace_ms = grace_seconds * 1000
        self._claim = client.register_script(lua_source("count_hit.lua", "claim_seats.lua"))
        self._release = client.register_script((LUA_DIR / "release_seats.lua").read_text())
        self._mark_sold = client.register_script((LUA_DIR / "mark_sold.lua").read_text())
        self._hold = client.register_script((LUA_DIR / "hold_seats.lua").read_text())
        # Releases waiting for Redis to come back, by (screening, token); one task retries them.
        self._unreleased: dict[tuple[int, str], tuple[tuple[int, ...], datetime]] = {}
        self._retrying: asyncio.Task[None] | None = None
        self._retry_after = retry_after_seconds
        # After a connection failure, Redis is skipped for a moment: per cluster slot on a
        # cluster (a dead master's screenings only), as a whole (key 0) on one Redis.
        self._cluster = isinstance(client, RedisCluster)
        self._down_until: dict[int, float] = {}

    async def load_scripts(self) -> None:
        try:
            for script in (self._claim, self._release, self._mark_sold, self._hold):
                await self._client.script_load(script.script)
        except REDIS_ERRORS as exc:
            log.warning("could not preload seat scripts (%s); they load on first use", exc)

    async def open_connections(self, count: int = POOL_SIZE) -> None:
        """Fill the connection pool at start-up. Otherwise the first onsale burst opens them
        all at once, on a busy CPU, where a connect slower than the Redis timeout counts as
        "Redis is down" and sends the next second's requests to PostgreSQL unfiltered."""
        try:
            await asyncio.gather(*(self._client.ping() for _ in range(count)))
        except REDIS_ERRORS as exc:
            log.warning("could not open the redis pool (%s); connections open on first use", exc)

    def _keys(self, screening_id: int, seat_ids: Sequence[int]) -> list[str]:
        return [seat_key(self._prefix, screening_id, s) for s in seat_ids]

    def _release_keys(self, screening_id: int, seat_ids: Sequence[int]) -> list[str]:
        """release_seats.lua's keys: the sold-out marker first (a release frees places)."""
        return [sold_out_key(self._prefix, screening_id), *self._keys(screening_id, seat_ids)]

    async def places_left(self, screening_id: int) -> PlacesCheck:
        if self._is_down(self._tag(screening_id)):
            return PlacesCheck(reachable=False)
        try:
            value = await self._client.get(sold_out_key(self._prefix, screening_id))
        except _UNREACHABLE as exc:
            self._mark_down(self._tag(screening_id))
            log.warning("redis unreachable for the sold-out check: %s", exc)
            return PlacesCheck(reachable=False)
        except REDIS_ERRORS as exc:
            log.warning("redis error on the sold-out check: %s", exc)
            return PlacesCheck(reachable=False)
        if value is None:
            return PlacesCheck()
        try:
            return PlacesCheck(left=int(value))
        except ValueError:
            return PlacesCheck()  # not ours to trust: PostgreSQL decides

    async def note_sold_out(self, screening_id: int, available: int, ttl_seconds: float) -> None:
        if self._is_down(self._tag(screening_id)):
            return
        await self._client.set(
            sold_out_key(self._prefix, screening_id), str(available), px=_ms(ttl_seconds)
        )

    async def claim(
        self,
        screening_id: int,
        seat_ids: Sequence[int],
        token: str,
        ttl_seconds: float,
        admission: Admission | None = None,
    ) -> HoldClaim:
        count = admission if isinstance(admission, ClaimCount) and not admission.decided else None
        if self._is_down(self._tag(screening_id)):
            return HoldClaim(claimed=False, reachable=False)  # `count` is left to its limiter
        keys = self._keys(screening_id, seat_ids)
        args: list[Any] = [token, _ms(ttl_seconds), self._grace_ms]
        if count is not None and self._cluster:
            # The counter and the seats live in different slots: both at once, each on its node.
            claim, _ = await asyncio.gather(
                self._run_claim(screening_id, seat_ids, keys, args, None), count.decide()
            )
            return claim
        if count is not None:
            keys, args = [count.key, *keys], [*args, count.limit, count.window_ms]
        return await self._run_claim(screening_id, seat_ids, keys, args, count)

    async def _run_claim(
        self,
        screening_id: int,
        seat_ids: Sequence[int],
        keys: list[str],
        args: list[Any],
        count: ClaimCount | None,
    ) -> HoldClaim:
        """claim_seats.lua, with `count` counted first in the same call when given."""
        try:
            reply = await self._claim(keys=keys, args=args)
        except REDIS_ERRORS + _UNREACHABLE as exc:
            if isinstance(exc, _UNREACHABLE):
                self._mark_down(self._tag(screening_id))
                log.warning("redis unreachable for seat claim: %s", exc)
            else:
                log.warning("redis error on seat claim: %s", exc)
            if count is not None:
                count.failed(exc)
            return HoldClaim(claimed=False, reachable=False)
        taken = list(reply)
        if count is not None:
            hits, window_left_ms, *taken = taken
            if not count.counted(int(hits), int(window_left_ms)):
                return HoldClaim(claimed=False)  # refused by the limit: nothing was claimed
        if taken:
            return HoldClaim(claimed=False, taken=tuple(seat_ids[int(i) - 1] for i in taken))
        return HoldClaim(claimed=True)

    async def hold_until(
        self, screening_id: int, seat_ids: Sequence[int], token: str, deadline: datetime
    ) -> None:
        if self._is_down(self._tag(screening_id)):
            return  # the claim fell back a moment ago: do not pay another timeout
        try:
            await self._hold(
                keys=self._keys(screening_id, seat_ids),
                args=[token, _epoch_ms(deadline), self._grace_ms],
            )
        except _UNREACHABLE:
            self._mark_down(self._tag(screening_id))
            raise

    async def release(
        self,
        screening_id: int,
        seat_ids: Sequence[int],
        token: str,
        until: datetime | None = None,
    ) -> None:
        if until is not None and self._is_down(self._tag(screening_id)):
            self._retry_later(screening_id, seat_ids, token, until)
            return
        try:
            await self._release(keys=self._release_keys(screening_id, seat_ids), args=[token])
        except (*_UNREACHABLE, *_RESHARDING) as exc:
            if isinstance(exc, _UNREACHABLE):
                self._mark_down(self._tag(screening_id))
            if until is None or until <= datetime.now(UTC):
                raise
            self._retry_later(screening_id, seat_ids, token, until)

    async def release_many(self, holds: Sequence[HeldSeats]) -> int:
        freed = 0
        for start in range(0, len(holds), SWEEP_PIPELINE):
            calls = [
                (self._release_keys(held.screening_id, held.seat_ids), [held.token])
                for held in holds[start : start + SWEEP_PIPELINE]
            ]
            freed += sum(int(n) for n in await run_scripts(self._client, self._release, calls))
        return freed

    async def release_sold(self, screening_id: int, seat_ids: Sequence[int]) -> None:
        """Delete the seats' "sold|" markers (refunded: PostgreSQL freed them), retried in
        the background for a while if Redis is unreachable. The release script's holder
        check with the holder "sold" matches exactly those markers."""
        until = datetime.now(UTC) + SOLD_RELEASE_RETRY
        await self.release(screening_id, seat_ids, SOLD_HOLDER, until)

    async def mark_sold(self, screening_id: int, seat_ids: Sequence[int]) -> None:
        if seat_ids:
            await self._mark_sold(keys=self._keys(screening_id, seat_ids))

    @property
    def unreleased(self) -> int:
        """Releases waiting for Redis to answer again."""
        return len(self._unreleased)

    async def promo_exhausted(self, promo_id: int) -> bool:
        """True while PostgreSQL's last word on the code was "no uses left" (a marker that
        lapses by itself); False when unsure: Redis down, slow or flushed."""
        if self._is_down(promo_exhausted_key(self._prefix, promo_id)):
            return False
        try:
            return bool(await self._client.exists(promo_exhausted_key(self._prefix, promo_id)))
        except _UNREACHABLE as exc:
            self._mark_down(promo_exhausted_key(self._prefix, promo_id))
            log.warning("redis unreachable for promo filter: %s", exc)
        except REDIS_ERRORS as exc:
            log.warning("redis error on promo filter: %s", exc)
        return False

    async def mark_promo_exhausted(self, promo_id: int, ttl_seconds: float) -> None:
        key = promo_exhausted_key(self._prefix, promo_id)
        await self._promo_quietly(key, self._client.set(key, 1, px=_ms(ttl_seconds)))

    async def clear_promo_exhausted(self, promo_id: int) -> None:
        key = promo_exhausted_key(self._prefix, promo_id)
        await self._promo_quietly(key, self._client.delete(key))

    async def _promo_quietly(self, key: str, call: Awaitable[object]) -> None:
        if self._is_down(key):
            close = getattr(call, "close", None)
            if close is not None:
                close()  # never awaited: no "coroutine was never awaited" warning
            return
        try:
            await call
        except _UNREACHABLE as exc:
            self._mark_down(key)
            log.warning("redis unreachable for promo filter: %s", exc)
        except REDIS_ERRORS as exc:
            log.warning("redis error on promo filter: %s", exc)

    async def close(self) -> None:
        """Stop retrying releases (the sweep of any other process, or the deadline, frees them)."""
        task, self._retrying = self._retrying, None
        if task is not None:
            await cancel_until_done(task)
        if self._unreleased:
            log.warning("dropping %d unreleased seat hold(s) at shutdown", len(self._unreleased))

    def _tag(self, screening_id: int) -> str:
        """A key in the screening's slot (its seats, its marker: one hash tag)."""
        return sold_out_key(self._prefix, screening_id)

    def _shard(self, key: str) -> int:
        return key_slot(key.encode()) if self._cluster else 0

    def _is_down(self, key: str) -> bool:
        return time.monotonic() < self._down_until.get(self._shard(key), 0.0)

    def _mark_down(self, key: str) -> None:
        # After a connection failure, skip Redis for a moment instead of paying a connect
        # timeout on every request while it is down.
        now = time.monotonic()
        self._down_until = {k: t for k, t in self._down_until.items() if t > now}
        self._down_until[self._shard(key)] = now + self._retry_after

    def _retry_later(
        self, screening_id: int, seat_ids: Sequence[int], token: str, until: datetime
    ) -> None:
        log.warning("redis unreachable; releasing seats %s in the background", list(seat_ids))
        self._unreleased[(screening_id, token)] = (tuple(seat_ids), until)
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(
                self._retry_releases(), name="seat-hold-release-retries"
            )

    async def _retry_releases(self) -> None:
        delay = RETRY_FIRST_DELAY
        while self._unreleased:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)
            now = datetime.now(UTC)
            for (screening_id, token), (seat_ids, until) in list(self._unreleased.items()):
                if until <= now:  # the key's value carries this deadline: it is free already
                    del self._unreleased[(screening_id, token)]
                    continue
                try:
                    keys = self._release_keys(screening_id, seat_ids)
                    await self._release(keys=keys, args=[token])
                except REDIS_FAILURES as exc:
                    log.info("seat release still failing (%s); retrying", exc)
                    break
                del self._unreleased[(screening_id, token)]
                delay = RETRY_FIRST_DELAY


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)
