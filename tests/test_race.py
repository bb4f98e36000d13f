"""The seat race, with real concurrency: many connections at once, several app instances."""

import asyncio
from collections import Counter

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from cinema.app import init_app
from tests.conftest import REDIS_URL, make_settings


async def live_reservations(database_url, screening_id):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            "SELECT r.seat_id, r.booking_id FROM reservations r"
            " WHERE r.screening_id = $1 AND r.status <> 'CANCELLED' ORDER BY r.seat_id",
            screening_id,
        )
    finally:
        await conn.close()


async def race(clients, tokens, screening_id, seat_sets):
    """Every token books its seat set at the same moment, spread over the clients."""
    start = asyncio.Event()

    async def one(i, token, seats):
        await start.wait()
        return await clients[i % len(clients)].book(token, screening_id, seats)

    tasks = [
        asyncio.create_task(one(i, t, s))
        for i, (t, s) in enumerate(zip(tokens, seat_sets, strict=True))
    ]
    await asyncio.sleep(0)  # let every task reach the start line
    start.set()
    return await asyncio.gather(*tasks)


def statuses(replies):
    return Counter(r.status for r in replies)


_COUNTERS = {
    "redis": ("cinema_bookings_conflicted_total", {"caught_by": "redis"}),
    "postgres": ("cinema_bookings_conflicted_total", {"caught_by": "postgres"}),
    "fallbacks": ("cinema_redis_fallbacks_total", {}),
}


class Counted:
    """The booking-events counters (the BookingEvents port's metrics) of this test process,
    read as deltas since the start of a test."""

    NAMES = _COUNTERS

    def __init__(self):
        self._start = {k: self._now(k) for k in self.NAMES}

    def _now(self, what):
        name, labels = self.NAMES[what]
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def __getitem__(self, what):
        return self._now(what) - self._start[what]


async def test_100_clients_one_seat_exactly_one_wins(make_api, users, database_url, redis_prefix):
    # A generous Redis timeout: this test counts the losers the filter turns away, and a
    # 0.5 s read that lapses on a loaded machine (rightly) sends the next second's requests
    # to PostgreSQL instead. The fallback has tests of its own.
    app = init_app(make_settings(database_url, redis_prefix, redis_timeout_seconds=5.0))
    api = await make_api(app=app)
    screening = await api.new_screening()
    tokens = await users.create(100)
    seat = screening.seat_ids[0]
    counted = Counted()
    replies = await race([api], tokens, screening.id, [[seat]] * 100)
    assert statuses(replies) == {201: 1, 409: 99}
    for reply in replies:
        if reply.status == 409:
            assert reply.body["error"] == {
                "code": "seats_unavailable",
                "message": reply.body["error"]["message"],
                "seat_ids": [seat],
            }
    rows = await live_reservations(database_url, screening.id)
    assert [r["seat_id"] for r in rows] == [seat]
    # every loser was turned away by the Redis filter, none reached PostgreSQL
    assert counted["redis"] == 99
    assert counted["postgres"] == 0


async def test_overlapping_sets_one_wins_loser_holds_nothing(make_api, users, database_url):
    api = await make_api()
    screening = await api.new_screening()
    s1, s2, s3 = screening.seat_ids[:3]
    for _ in range(10):  # ten fresh rounds of the same race
        screening = await api.new_screening()
        s1, s2, s3 = screening.seat_ids[:3]
        a, b = await users.create(2)
        replies = await race([api], [a, b], screening.id, [[s1, s2], [s2, s3]])
        assert sorted(r.status for r in replies) == [201, 409]
        winner = next(r for r in replies if r.status == 201).body
        loser_only = s3 if winner["seat_ids"] == [s1, s2] else s1
        seats = await api.seat_statuses(screening.id)
        assert seats[loser_only] == "AVAILABLE"
        rows = await live_reservations(database_url, screening.id)
        assert [r["seat_id"] for r in rows] == winner["seat_ids"]
        # the loser's lone seat can still be taken by someone else
        c = await users.one()
        assert (await api.book(c, screening.id, [loser_only])).status == 201


async def test_race_with_filter_off_postgres_alone_decides(
    make_api, users, database_url, redis_prefix
):
    app = init_app(make_settings(database_url, redis_prefix, hold_filter="off"))
    apis = [await make_api(app=app), await make_api(hold_filter="off")]  # two app instances
    screening = await apis[0].new_screening()
    tokens = await users.create(100)
    seat = screening.seat_ids[0]
    counted = Counted()
    replies = await race(apis, tokens, screening.id, [[seat]] * 100)
    assert statuses(replies) == {201: 1, 409: 99}
    assert len(await live_reservations(database_url, screening.id)) == 1
    assert counted["redis"] == 0
    assert counted["postgres"] == 99


async def test_race_while_redis_is_flushed(make_api, users, database_url, redis_prefix):
    """A flusher deletes every hold key as fast as it can while 100 clients race: Redis lets
    several through, PostgreSQL still sells the seat once."""
    apis = [await make_api(), await make_api()]
    screening = await apis[0].new_screening()
    tokens = await users.create(100)
    seat = screening.seat_ids[0]
    client = aioredis.Redis.from_url(REDIS_URL)
    stop = asyncio.Event()
    flushes = 0

    async def flusher():
        nonlocal flushes
        while not stop.is_set():
            keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            flushes += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(flusher())
    try:
        replies = await race(apis, tokens, screening.id, [[seat]] * 100)
    finally:
        stop.set()
        await task
        await client.aclose()
    assert flushes > 0
    assert statuses(replies) == {201: 1, 409: 99}
    assert len(await live_reservations(database_url, screening.id)) == 1


async def test_flushed_redis_does_not_resell_a_held_seat(make_api, users, redis_prefix):
    api = await make_api()
    screening = await api.new_screening()
    first, *others = await users.create(21)
    seat = screening.seat_ids[0]
    assert (await api.book(first, screening.id, [seat])).status == 201
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
        assert keys
        await client.delete(*keys)
    finally:
        await client.aclose()
    replies = await race([api], others, screening.id, [[seat]] * 20)
    assert statuses(replies) == {409: 20}


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:1/0"])
async def test_redis_unreachable_bookings_still_correct(make_api, users, database_url, redis_url):
    app = init_app(make_settings(database_url, "cinematest:unreachable:", redis_url=redis_url))
    api = await make_api(app=app)
    screening = await api.new_screening()
    tokens = await users.create(50)
    seat = screening.seat_ids[0]
    counted = Counted()
    replies = await race([api], tokens, screening.id, [[seat]] * 50)
    assert statuses(replies) == {201: 1, 409: 49}
    assert len(await live_reservations(database_url, screening.id)) == 1
    assert counted["fallbacks"] == 50
    # and the normal flow keeps working: another seat, a cancel, a rebook
    token = tokens[0]
    other = await api.book(token, screening.id, [screening.seat_ids[1]])
    assert other.status == 201
    assert (await api.delete(f"/api/bookings/{other.body['id']}/", token=token)).status == 200
    assert (await api.book(tokens[1], screening.id, [screening.seat_ids[1]])).status == 201


async def test_concurrent_retries_with_one_idempotency_key_make_one_booking(make_api, users):
    apis = [await make_api(), await make_api()]
    screening = await apis[0].new_screening()
    token = await users.one()
    seats = screening.seat_ids[:2]
    start = asyncio.Event()

    async def retry(i):
        await start.wait()
        return await apis[i % 2].book(token, screening.id, seats, key="checkout-7")

    tasks = [asyncio.create_task(retry(i)) for i in range(10)]
    await asyncio.sleep(0)
    start.set()
    replies = await asyncio.gather(*tasks)
    assert statuses(replies) == {201: 10}
    assert len({r.body["id"] for r in replies}) == 1
    mine = await apis[0].get("/api/my-bookings/", token=token)
    assert len(mine.body) == 1
    # the held seats are still held by that one booking
    seat_map = await apis[0].seat_statuses(screening.id)
    assert [seat_map[s] for s in seats] == ["LOCKED", "LOCKED"]
