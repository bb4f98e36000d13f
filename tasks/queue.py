"""The Taskiq broker, schedule source and scheduler, on Redis: every task `cinema worker` runs.

One list queue (ListQueueBroker: a worker exits cleanly on SIGTERM) carries the expiry task
`cinema.expire_booking` and the follow-up tasks of tasks/follow_ups.py (ticket emails,
payment-intent cancels). One ListRedisScheduleSource holds a per-booking expiry schedule
(`booking-<id>`) due one scheduler tick before the booking's deadline (the task then waits
for the deadline itself; see SCHEDULE_LEAD), and the follow-ups' timed retries. Every key
starts with REDIS_KEY_PREFIX, so deployments (and test runs) that share a Redis never see
each other's tasks. (The list is still named `<prefix>taskiq:expiry`: renaming it would
strand the tasks queued by a running deployment.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from taskiq import ScheduledTask, TaskiqScheduler
from taskiq.exceptions import ScheduledTaskCancelledError
from taskiq.message import BrokerMessage
from taskiq_redis import ListQueueBroker, ListRedisScheduleSource

from cinema.holds import RedirectingRedisCluster
from tasks.metrics import IN_FLIGHT

log = logging.getLogger(__name__)

EXPIRE_TASK_NAME = "cinema.expire_booking"
# BRPOP wakes up this often even when idle, so a stopping worker never waits on Redis long.
_POP_TIMEOUT_SECONDS = 1
_RETRY_AFTER_SECONDS = 1.0
# The scheduler ticks on whole seconds, so a task sent "at" its deadline would run 0-1 s
# late. Instead it is sent one tick early, with the deadline as an argument, and the task
# sleeps until the deadline itself: the message is already in the worker when it is due.
SCHEDULE_LEAD = dt.timedelta(seconds=1)
MAX_EARLY_SECONDS = SCHEDULE_LEAD.total_seconds() + 1
# Wake a little after the deadline: uvloop's timers have millisecond granularity and can
# fire early, and PostgreSQL (whose clock decides "past its deadline") must agree it is due.
_WAKE_MARGIN_SECONDS = 0.02
# How long a scheduler's claim on a schedule it sent is remembered: long enough for every
# other scheduler to have re-read its schedules (1 s) after the sender deleted it; short
# enough that one small key per booking does not pile up.
_CLAIM_SECONDS = 60

ExpireHandler = Callable[[int], Awaitable[None]]


async def _sleep_until(wake_at: float) -> None:
    early = wake_at - time.time()
    while early > 0:
        await asyncio.sleep(early)
        early = wake_at - time.time()


def schedule_id(booking_id: int) -> str:
    return f"booking-{booking_id}"


class TaskBroker(ListQueueBroker):
    """ListQueueBroker whose listener survives Redis outages without spinning, and which
    reuses one client (upstream builds a `Redis` object per command: a quarter of the
    worker's CPU in a burst, profiled).

    Upstream's `listen` only catches the builtin ConnectionError, so a redis-py error
    escapes, the receiver restarts at once and logs in a tight loop while Redis is down.

    With `cluster=True` the one client is a Redis Cluster client (upstream's
    ListQueueClusterBroker has the same spinning `listen`); the queue is one key, so one slot.
    """

    def __init__(
        self, url: str, queue_name: str, cluster: bool = False, **connection_kwargs: Any
    ) -> None:
        super().__init__(url, queue_name=queue_name, **connection_kwargs)
        self._client: Any = (
            RedirectingRedisCluster.from_url(url, **connection_kwargs)
            if cluster
            else Redis(connection_pool=self.connection_pool)
        )

    async def kick(self, message: BrokerMessage) -> None:
        await self._client.lpush(
            message.labels.get("queue_name") or self.queue_name, message.message
        )

    async def listen(self) -> AsyncGenerator[bytes, None]:
        while True:
            try:
                popped = await self._client.brpop([self.queue_name], timeout=_POP_TIMEOUT_SECONDS)
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("task queue unreachable (%s); retrying", exc)
                await asyncio.sleep(_RETRY_AFTER_SECONDS)
                continue
            if popped is not None:
                body = popped[1]
                yield body if isinstance(body, bytes) else body.encode()

    async def shutdown(self) -> None:
        await super().shutdown()
        if isinstance(self._client, RedisCluster):
            await self._client.aclose()


class TaskScheduleSource(ListRedisScheduleSource):
    """ListRedisScheduleSource with four changes that matter here.

    1. Upstream parses a time key with `key.split(":", 2)`, which breaks on a prefix that
       contains ':' (ours does: "cinema:taskiq:schedule"), so schedules left from before a
       restart were never found. We strip the known prefix instead.
    2. Upstream SCANs the whole Redis keyspace for past time keys on *every* update (every
       second here), although its docstring says "only during the first run". We scan
       once, at start-up, to pick up what was due while no scheduler ran; afterwards the
       previous minute's list is read directly, which covers the minute boundary.
    3. Several schedulers (one per `cinema worker`) all see every schedule; each claims a
       schedule (SET NX) before sending it, so only one of them sends it.
    4. A timed schedule is written and deleted in one pipelined round trip each, on one
       shared client (upstream builds a `Redis` object per call and decodes a schedule
       back before deleting it).
    5. Every command goes through that one client, which with `cluster=True` is a Redis
       Cluster client (upstream's RedisClusterScheduleSource SCANs every node for every
       schedule on every tick). The caller gives a hash-tagged prefix, so all of it is in
       one slot and MGET stays legal.
    """

    def __init__(
        self, url: str, prefix: str, cluster: bool = False, **connection_kwargs: Any
    ) -> None:
        super().__init__(url, prefix=prefix, **connection_kwargs)
        self._scanned = False
        self._client: Any = (
            RedirectingRedisCluster.from_url(url, **connection_kwargs)
            if cluster
            else Redis(connection_pool=self._connection_pool)
        )

    def _parse_time_key(self, key: str) -> dt.datetime | None:
        stamp = key.removeprefix(f"{self._prefix}:time:")
        try:
            return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M").replace(tzinfo=dt.UTC)
        except ValueError:
            return None

    async def _get_previous_time_schedules(self) -> list[bytes]:
        if not self._scanned:
            found = await self._scan_past_schedules()
            self._scanned = True
            if found:
                log.info("found %d expiry schedule(s) due while no scheduler ran", len(found))
            return found
        previous_minute = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        ids = await self._client.lrange(self._get_time_key(previous_minute), 0, -1)
        return [_bytes(i) for i in ids]

    async def _scan_past_schedules(self) -> list[bytes]:
        minute_before = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        minute_before -= dt.timedelta(minutes=1)
        time_keys = []
        async for key in self._client.scan_iter(match=f"{self._prefix}:time:*"):
            due = self._parse_time_key(_bytes(key).decode())
            if due is not None and due <= minute_before:
                time_keys.append(key)
        found: list[bytes] = []
        for key in time_keys:
            found.extend(_bytes(i) for i in await self._client.lrange(key, 0, -1))
        return found

    async def get_schedules(self) -> list[ScheduledTask]:
        """The timed schedules of this minute (and the previous one), and cron/interval
        ones, read with the shared client."""
        timed = await self._get_previous_time_schedules()
        now = dt.datetime.now(dt.UTC)
        ids = [
            *await self._client.lrange(self._get_cron_key(), 0, -1),
            *await self._client.lrange(self._get_interval_key(), 0, -1),
            *timed,
            *await self._client.lrange(self._get_time_key(now), 0, -1),
        ]
        raw: list[Any] = []
        for start in range(0, len(ids), self._buffer_size):
            chunk = ids[start : start + self._buffer_size]
            keys = [self._get_data_key(_bytes(i).decode()) for i in chunk]
            raw.extend(await self._client.mget(keys))
        return [ScheduledTask.model_validate(self._serializer.loadb(r)) for r in raw if r]

    async def delete_schedule(self, schedule_id: str) -> None:
        raw = await self._client.getdel(self._get_data_key(schedule_id))
        if raw is None:
            return
        schedule = ScheduledTask.model_validate(self._serializer.loadb(raw))
        if schedule.cron is not None:
            await self._client.lrem(self._get_cron_key(), 0, schedule_id)
        elif schedule.time is not None:
            await self._client.lrem(self._get_time_key(schedule.time), 0, schedule_id)
        elif schedule.interval:
            await self._client.lrem(self._get_interval_key(), 0, schedule_id)

    async def shutdown(self) -> None:
        await super().shutdown()
        if isinstance(self._client, RedisCluster):
            await self._client.aclose()

    async def pre_send(self, task: ScheduledTask) -> None:
        claimed = await self._client.set(
            f"{self._prefix}:sent:{task.schedule_id}", b"1", nx=True, ex=_CLAIM_SECONDS
        )
        if not claimed:
            raise ScheduledTaskCancelledError  # another scheduler sent it

    async def add_schedule(self, schedule: ScheduledTask) -> None:
        """Write a timed schedule in one round trip with the shared client (the API calls
        this once per booking)."""
        if schedule.time is None:
            await super().add_schedule(schedule)
            return
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(
                self._get_data_key(schedule.schedule_id),
                self._serializer.dumpb(schedule.model_dump(mode="json")),
            )
            pipe.rpush(self._get_time_key(schedule.time), schedule.schedule_id)
            await pipe.execute()

    async def add_timed_schedules(self, schedules: Sequence[ScheduledTask]) -> None:
        """Write many timed schedules in one pipelined round trip."""
        async with self._client.pipeline(transaction=False) as pipe:
            for schedule in schedules:
                assert schedule.time is not None
                pipe.set(
                    self._get_data_key(schedule.schedule_id),
                    self._serializer.dumpb(schedule.model_dump(mode="json")),
                )
                pipe.rpush(self._get_time_key(schedule.time), schedule.schedule_id)
            await pipe.execute()

    async def post_send(self, task: ScheduledTask) -> None:
        """Delete the sent schedule in one round trip (upstream reads and decodes it back
        first, to learn the time we already have)."""
        if task.time is None:
            await super().post_send(task)
            return
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.delete(self._get_data_key(task.schedule_id))
            pipe.lrem(self._get_time_key(task.time), 0, task.schedule_id)
            await pipe.execute()


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class TaskQueue:
    """Broker + schedule source + scheduler, and the expiry task; the follow-up tasks
    register themselves on the same broker (tasks/follow_ups.py).

    The API process only kicks tasks and adds schedules; the worker process also runs the
    receiver and the scheduler (tasks/loop.py), after `serve(handler)`.
    """

    def __init__(
        self,
        redis_url: str,
        key_prefix: str,
        timeout_seconds: float = 5.0,
        cluster: bool = False,
    ) -> None:
        connection: dict[str, Any] = {
            "socket_connect_timeout": timeout_seconds,
            "socket_timeout": max(timeout_seconds, _POP_TIMEOUT_SECONDS + 4),
        }
        # On a cluster every Taskiq key shares one hash tag: one slot, one node.
        base = f"{{{key_prefix}taskiq}}:" if cluster else f"{key_prefix}taskiq:"
        self.broker = TaskBroker(redis_url, f"{base}expiry", cluster, **connection)
        self.schedules = TaskScheduleSource(
            redis_url, prefix=f"{base}schedule", cluster=cluster, **connection
        )
        self.scheduler = TaskiqScheduler(self.broker, sources=[self.schedules])
        self._handler: ExpireHandler | None = None

        async def expire_booking(booking_id: int, due_at: float = 0.0) -> None:
            if self._handler is None:
                raise RuntimeError("this process does not run expiry tasks")
            wake_at = min(due_at, time.time() + MAX_EARLY_SECONDS) + _WAKE_MARGIN_SECONDS
            with IN_FLIGHT.track_inprogress():
                await _sleep_until(wake_at)
                await self._handler(booking_id)

        self.expire_task = self.broker.register_task(expire_booking, task_name=EXPIRE_TASK_NAME)

    def serve(self, handler: ExpireHandler) -> None:
        """Make this process run the expiry task with `handler` (the worker does this)."""
        self._handler = handler

    async def schedule_many(self, bookings: Sequence[tuple[int, dt.datetime]]) -> None:
        """Have the expiry task run for each (booking id, its expires_at), in one round trip.
        Builds the schedules the way `kicker().schedule_by_time()` does, without a kicker per
        booking."""
        await self.schedules.add_timed_schedules(
            [
                ScheduledTask(
                    schedule_id=schedule_id(booking_id),
                    task_name=self.expire_task.task_name,
                    labels=dict(self.expire_task.labels),
                    args=[booking_id, due.timestamp()],
                    kwargs={},
                    time=due - SCHEDULE_LEAD,
                )
                for booking_id, due in bookings
            ]
        )

    async def close(self) -> None:
        await self.schedules.shutdown()
        await self.schedules._connection_pool.disconnect()
        await self.broker.shutdown()
