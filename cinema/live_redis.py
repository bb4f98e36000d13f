"""Live seat status through Redis: the only module that speaks Redis for it.

Changes go out on one shard channel per screening, `{prefix}{screening:ID}:live`, with
SPUBLISH/SSUBSCRIBE (Redis 7 sharded pub/sub): the channel lives in the slot of its hash tag,
the same slot as the screening's seat keys and its change counter, so on Redis Cluster a
change is published and received on the shard that owns the screening instead of being
broadcast to every node. `publish_change.lua` numbers and publishes a change in one step."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from cinema.booking.live import ChangeKind, SeatChange
from cinema.holds import LUA_DIR, REDIS_FAILURES, RedisClient, run_scripts
from cinema.live.service import FeedLost, LiveUnavailable
from cinema.metrics import LIVE_CHANGES_DROPPED

log = logging.getLogger(__name__)

COUNTER_TTL_SECONDS = 14 * 24 * 3600  # refreshed by every change
PUBLISH_QUEUE = 10_000  # changes waiting to be published; more are dropped (viewers resync)
PUBLISH_BATCH = 500  # changes per round trip
PING_SECONDS = 2.0  # the subscription's liveness check
PING_MISSES = 3  # this many pings unanswered: the feed is lost


def counter_key(prefix: str, screening_id: int) -> str:
    return f"{prefix}{{screening:{screening_id}}}:live:seq"


def channel(prefix: str, screening_id: int) -> str:
    return f"{prefix}{{screening:{screening_id}}}:live"


def encode(change: SeatChange) -> bytes:
    return orjson.dumps({"k": change.kind.value, "s": change.seat_ids, "t": change.at})


def decode(screening_id: int, data: bytes) -> tuple[int, SeatChange]:
    head, _, body = data.partition(b" ")
    fields = orjson.loads(body)
    change = SeatChange(ChangeKind(fields["k"]), screening_id, tuple(fields["s"]), fields["t"])
    return int(head), change


class RedisSeatChanges:
    """The SeatChangeSink: a bounded queue drained by one task that publishes in pipelined
    batches, so a booking never waits for Redis and a Redis outage never fails one."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script((LUA_DIR / "publish_change.lua").read_text())
        self._queue: deque[SeatChange] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def publish(self, change: SeatChange) -> None:
        if len(self._queue) >= PUBLISH_QUEUE:
            LIVE_CHANGES_DROPPED.inc()
            return
        self._queue.append(change)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                n = min(len(self._queue), PUBLISH_BATCH)
                await self._send([self._queue.popleft() for _ in range(n)])
            self._idle.set()

    async def flush(self, within: float = 5.0) -> None:
        """Wait until everything queued so far has been sent (or dropped)."""
        await asyncio.wait_for(self._idle.wait(), within)

    async def _send(self, batch: list[SeatChange]) -> None:
        calls = [
            (
                [counter_key(self._prefix, change.screening_id)],
                [channel(self._prefix, change.screening_id), encode(change), COUNTER_TTL_SECONDS],
            )
            for change in batch
        ]
        try:
            await run_scripts(self._client, self._script, calls)
        except REDIS_FAILURES as exc:
            LIVE_CHANGES_DROPPED.inc(len(batch))
            log.warning("could not publish %d seat change(s) (%r)", len(batch), exc)


class RedisChangeFeed:
    """The ChangeFeed: one pub/sub connection per process carrying a shard-channel
    subscription per watched screening."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client  # a client of its own: its connection stays in subscribed mode
        self._prefix = prefix
        self._pubsub: Any = None  # a PubSub; on a cluster a ClusterPubSub (one per node)
        self._subscribed = asyncio.Event()
        self._leaving: set[int] = set()  # screenings we unsubscribed from ourselves
        pattern = re.escape(prefix) + r"\{screening:(\d+)\}:live"
        self._channel = re.compile(pattern.encode())

    async def subscribe(self, screening_id: int) -> None:
        try:
            if self._pubsub is None:
                if isinstance(self._client, RedisCluster):
                    await self._client.initialize()  # ssubscribe needs the slot map first
                self._pubsub = self._client.pubsub()
            self._leaving.discard(screening_id)
            await self._pubsub.ssubscribe(channel(self._prefix, screening_id))
        except REDIS_FAILURES as exc:
            raise LiveUnavailable(f"live seat status unavailable: {exc}") from exc
        self._subscribed.set()

    async def unsubscribe(self, screening_id: int) -> None:
        if self._pubsub is not None:
            self._leaving.add(screening_id)  # its sunsubscribe is ours, not a moved slot
            await self._pubsub.sunsubscribe(channel(self._prefix, screening_id))

    async def last_id(self, screening_id: int) -> int:
        try:
            value = await self._client.get(counter_key(self._prefix, screening_id))
        except REDIS_FAILURES as exc:
            raise LiveUnavailable(f"live seat status unavailable: {exc}") from exc
        return int(value or 0)

    async def messages(self) -> AsyncIterator[tuple[int, int, SeatChange]]:
        heard = pinged = time.monotonic()
        while True:
            if not self._subscribed.is_set():
                await self._subscribed.wait()
                heard = pinged = time.monotonic()  # the wait was not Redis's silence
            pubsub = self._pubsub
            if pubsub is None:
                raise FeedLost("not subscribed")
            try:
                message = await _next_message(pubsub)
                now = time.monotonic()
                if now - pinged >= PING_SECONDS:
                    pinged = now
                    await _ping(pubsub)
            except REDIS_FAILURES as exc:
                raise FeedLost(repr(exc)) from exc
            if message is None:
                if now - heard > PING_SECONDS * PING_MISSES:
                    raise FeedLost("redis stopped answering")
                continue
            heard = now
            if message["type"] == "sunsubscribe":
                await self._check_dropped(message["channel"])
            if message["type"] != "smessage":
                continue
            found = self._channel.fullmatch(message["channel"])
            if found is None:
                continue
            try:
                event_id, change = decode(int(found.group(1)), message["data"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring a malformed seat change on %r", message["channel"])
                continue
            yield int(found.group(1)), event_id, change

    async def _check_dropped(self, name: bytes) -> None:
        """A sunsubscribe we did not ask for: the channel's slot moved to another master
        (resharding), which drops its subscribers. Re-read the slot's owner (a keyed read in
        it follows MOVED), then lose the feed: viewers reconnect and resync, and the next
        subscription goes to the new owner."""
        found = self._channel.fullmatch(name)
        if found is None or int(found.group(1)) in self._leaving:
            return
        screening_id = int(found.group(1))
        try:
            await self._client.get(counter_key(self._prefix, screening_id))
        except REDIS_FAILURES as exc:
            log.info("re-reading the slot of screening %s: %r", screening_id, exc)
        raise FeedLost(f"screening {screening_id}'s channel was dropped (its slot moved)")

    async def reset(self) -> None:
        self._leaving.clear()
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed.clear()
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except REDIS_FAILURES as exc:
                log.info("closing the lost pub/sub connection: %r", exc)

    async def close(self) -> None:
        await self.reset()


async def _next_message(pubsub: Any) -> Any:
    if isinstance(pubsub, ClusterPubSub):  # a connection per node that owns a watched slot
        if not pubsub.node_pubsub_mapping:  # nothing watched: upstream would spin (or raise)
            await asyncio.sleep(0.2)
            return None
        # sunsubscribe included: the server drops a channel whose slot moved (resharding).
        return await pubsub.get_sharded_message(ignore_subscribe_messages=False, timeout=0.2)
    return await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)


async def _ping(pubsub: Any) -> None:
    if isinstance(pubsub, ClusterPubSub):
        for node_pubsub in list(pubsub.node_pubsub_mapping.values()):
            await node_pubsub.ping()
        return
    await pubsub.ping()
