"""Slow and dead viewers of the live seat status: a viewer that stops reading is dropped and
what the server holds for it stays bounded, while a burst of changes drops no viewer that keeps
reading. Real server on loopback, real Redis; the burst goes through the real publisher."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis

from cinema.api.keys import LIVE
from cinema.app import init_app
from cinema.booking.live import ChangeKind, SeatChange
from cinema.live_redis import RedisSeatChanges
from cinema.settings import Settings
from tests.client import ApiClient, wait_for
from tests.conftest import AppFactory, make_settings
from tests.sse import open_stream

QUEUE = Settings.model_fields["sse_viewer_queue"].default  # the default outbox, frames
BURST = 500  # changes in one pipeline (the publisher's batch); an onsale's 200 buyers make fewer


@contextlib.asynccontextmanager
async def publisher(rds: aioredis.Redis, prefix: str) -> AsyncIterator[RedisSeatChanges]:
    sink = RedisSeatChanges(rds, prefix)
    task = asyncio.ensure_future(sink.run())
    try:
        yield sink
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def burst(sink: RedisSeatChanges, screening_id: int, seat_id: int) -> None:
    """BURST changes of one seat in one pipelined batch; it ends AVAILABLE, as it started."""
    for i in range(BURST):
        kind = ChangeKind.HELD if i % 2 == 0 else ChangeKind.RELEASED
        sink.publish(SeatChange(kind, screening_id, (seat_id,), time.time()))
    await sink.flush(within=30)


def dead_viewer(base_url: str, screening_id: int) -> socket.socket:
    """A client that asks for the stream and never reads: a tiny receive buffer, so the
    server's writes back up at once."""
    host, port = base_url.removeprefix("http://").rstrip("/").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    request = f"GET /api/screenings/{screening_id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n"
    sock.sendall(request.encode())
    return sock


async def test_a_dead_viewer_is_dropped_and_a_burst_drops_none_that_keeps_up(
    make_api: AppFactory, database_url: str, redis_prefix: str, rds: aioredis.Redis
) -> None:
    settings = make_settings(database_url, redis_prefix, sse_reconcile_seconds=3600)
    app = init_app(settings)
    api: ApiClient = await make_api(app)
    screening = await api.new_screening()
    keeper = await open_stream(api.session, api.base_url, screening.id)
    await keeper.until(lambda s: bool(s.seats), what="the first resync")
    sock = dead_viewer(api.base_url, screening.id)
    live = app[LIVE]

    def viewers(n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(live.backlogs(screening.id)) == n

        return check

    await wait_for(viewers(2), within=10, what="2 viewers")

    async def read_all() -> None:
        while not keeper.ended:
            await keeper.next(within=60)

    reading = asyncio.ensure_future(read_all())
    first = keeper.events[0].id
    assert first is not None
    most = published = 0

    async def all_arrived() -> bool:
        assert not reading.done(), reading  # the keeper was not dropped
        return keeper.last_id == first + published

    async with publisher(rds, redis_prefix) as sink:
        for _ in range(30):  # the dead viewer backs up within a few bursts
            await burst(sink, screening.id, screening.seat_ids[0])
            published += BURST
            most = max([most, *live.backlogs(screening.id)])
            # Keeping up: reading each burst before the next one comes.
            await wait_for(all_arrived, within=30, what="the burst at the keeper")
            if len(live.backlogs(screening.id)) == 1:
                break
        await wait_for(viewers(1), within=10, what="the dead viewer's drop")
        assert most <= QUEUE, most  # what the server held for the dead viewer stayed bounded
        await burst(sink, screening.id, screening.seat_ids[1])
        published += BURST
    await wait_for(all_arrived, within=30, what="every burst at the keeper")
    ids = [e.id for e in keeper.events[1:]]
    assert ids == list(range(first + 1, first + published + 1))  # none missing, in order
    assert not keeper.ended
    assert keeper.seats == await api.seat_statuses(screening.id)  # PostgreSQL

    sock.setblocking(False)
    closed = False
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 10
    while not closed and time.monotonic() < deadline:  # drain what was sent before the drop
        try:
            closed = not await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        except ConnectionResetError:
            closed = True
    assert closed, "the server kept the dead viewer's connection open"
    sock.close()
    reading.cancel()
    keeper.close()
