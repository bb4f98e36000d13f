"""BookingService.expire / expire_overdue against the real PostgreSQL and Redis, in-process;
and the API side of scheduling (the schedule is written; a failure keeps the booking)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from taskiq import ScheduledTask

from cinema.auth.tokens import TokenIssuer
from cinema.booking.model import Booking, BookingStatus
from cinema.booking.ports import NoBookingEvents, NoExpiryScheduler
from cinema.booking.service import BookingService
from cinema.catalogue.service import CatalogueService
from cinema.holds import RedisSeatHolds, seat_key
from cinema.store.bookings import PgBookingStore
from cinema.store.catalogue import PgCatalogueStore
from cinema.store.pool import Pool
from tasks.queue import EXPIRE_TASK_NAME, TaskScheduleSource, schedule_id
from tests.client import ApiClient, wait_for
from tests.conftest import JWT_SECRET, REDIS_URL, AppFactory, Users


class RecordingEvents(NoBookingEvents):
    """The BookingEvents port (metrics and logs in production), recording expiries."""

    def __init__(self) -> None:
        self.ended: list[int] = []

    def expired(self, booking: Booking) -> None:
        self.ended.append(booking.id)


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}svc{secrets.token_hex(3)}:"


@pytest.fixture
def hook() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture
def service(pool: Pool, rds: aioredis.Redis, prefix: str, hook: RecordingEvents) -> BookingService:
    return BookingService(
        holds=RedisSeatHolds(rds, prefix=prefix, grace_seconds=5),
        store=PgBookingStore(pool),
        catalogue=CatalogueService(PgCatalogueStore(pool)),
        expiry=NoExpiryScheduler(),
        hold_ttl_seconds=900,
        events=hook,
    )


@pytest.fixture
async def api(make_api: AppFactory, prefix: str) -> ApiClient:
    return await make_api(redis_key_prefix=prefix)


async def _book_many(
    service: BookingService, users: Users, api: ApiClient, count: int
) -> tuple[list[Booking], int]:
    """`count` one-seat bookings made through the service (so the holds are in Redis)."""
    screening = await api.new_screening(layout={"rows": [{"label": "A", "seats": count + 1}]})
    tokens = await users.create(1)
    user_id = TokenIssuer(JWT_SECRET, 60).verify(tokens[0]).user_id
    results = await asyncio.gather(
        *(service.book(user_id, screening.id, [s]) for s in screening.seat_ids[:count])
    )
    return [r.booking for r in results], screening.id


async def _make_overdue(pool: Pool, ids: list[int]) -> None:
    """Move the deadlines into the past, as if HOLD_TTL_SECONDS had elapsed."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE bookings SET expires_at = now() - interval '1 second'"
            " WHERE id = ANY($1::bigint[])",
            ids,
        )
        await conn.execute(
            "UPDATE reservations SET expires_at = now() - interval '1 second'"
            " WHERE booking_id = ANY($1::bigint[])",
            ids,
        )


async def test_expire_waits_for_the_deadline_then_ends_once(
    service: BookingService,
    users: Users,
    api: ApiClient,
    pool: Pool,
    rds: aioredis.Redis,
    prefix: str,
    hook: RecordingEvents,
) -> None:
    (booking,), screening_id = await _book_many(service, users, api, 1)
    key = seat_key(prefix, screening_id, booking.seat_ids[0])
    assert await service.expire(booking.id) is None  # not due yet: untouched
    assert (await PgBookingStore(pool).booking(booking.id)).status is BookingStatus.PENDING  # type: ignore[union-attr]
    assert await rds.exists(key) == 1

    await _make_overdue(pool, [booking.id])
    # Many workers may run the same task at once: exactly one ends it.
    results = await asyncio.gather(*(service.expire(booking.id) for _ in range(20)))
    ended = [r for r in results if r is not None]
    assert len(ended) == 1
    assert ended[0].status is BookingStatus.CANCELLED
    assert ended[0].cancel_reason == "expired"
    assert await rds.exists(key) == 0
    assert hook.ended == [booking.id]
    assert await service.expire(booking.id) is None
    assert await service.expire(10**12) is None  # unknown booking: nothing to do
    assert hook.ended == [booking.id]


async def test_expire_leaves_paid_bookings_alone(
    service: BookingService, users: Users, api: ApiClient, pool: Pool, hook: RecordingEvents
) -> None:
    (booking,), _ = await _book_many(service, users, api, 1)
    store = PgBookingStore(pool)
    assert await store.end_booking(booking.id, BookingStatus.CONFIRMED, None) is not None
    await _make_overdue(pool, [booking.id])
    assert await service.expire(booking.id) is None
    assert (await store.booking(booking.id)).status is BookingStatus.CONFIRMED  # type: ignore[union-attr]
    assert hook.ended == []


async def test_a_user_cancelled_booking_does_not_expire(
    service: BookingService, users: Users, api: ApiClient, pool: Pool, hook: RecordingEvents
) -> None:
    (booking,), _ = await _book_many(service, users, api, 1)
    await service.cancel(booking.user_id, booking.id)
    await _make_overdue(pool, [booking.id])
    assert await service.expire(booking.id) is None
    assert hook.ended == []


async def test_concurrent_reconcilers_end_every_overdue_booking_exactly_once(
    service: BookingService,
    users: Users,
    api: ApiClient,
    pool: Pool,
    rds: aioredis.Redis,
    prefix: str,
    hook: RecordingEvents,
) -> None:
    bookings, screening_id = await _book_many(service, users, api, 31)
    overdue, fresh = bookings[:30], bookings[30]
    await _make_overdue(pool, [b.id for b in overdue])

    async def reconcile() -> list[int]:
        seen: list[int] = []
        while True:
            batch = await service.expire_overdue(4)
            seen.extend(b.id for b in batch)
            if len(batch) < 4:
                return seen

    runs = await asyncio.gather(*(reconcile() for _ in range(3)))
    ended = [i for run in runs for i in run]
    assert len(ended) == len(set(ended))  # nobody ended the same booking twice
    assert {b.id for b in overdue} <= set(ended)
    assert fresh.id not in ended
    statuses = await pool.fetch(
        "SELECT status, count(*) AS n FROM bookings WHERE id = ANY($1::bigint[]) GROUP BY 1",
        [b.id for b in overdue],
    )
    assert {(r["status"], r["n"]) for r in statuses} == {("CANCELLED", 30)}
    seat_keys = [seat_key(prefix, screening_id, b.seat_ids[0]) for b in overdue]
    assert await rds.exists(*seat_keys) == 0
    assert await rds.exists(seat_key(prefix, screening_id, fresh.seat_ids[0])) == 1
    assert sorted(set(hook.ended) & {b.id for b in overdue}) == sorted(b.id for b in overdue)


async def test_booking_writes_its_expiry_schedule(
    api: ApiClient, users: Users, rds: aioredis.Redis, prefix: str
) -> None:
    token = await users.one()
    screening = await api.new_screening()
    booked = await api.book(token, screening.id, [screening.seat_ids[0]])
    assert booked.status == 201, booked
    data_key = f"{prefix}taskiq:schedule:data:{schedule_id(booked.body['id'])}"

    async def written() -> bool:  # written off the request path, right after the 201
        return bool(await rds.exists(data_key))

    await wait_for(written, within=5)


async def test_booking_succeeds_when_scheduling_fails(
    make_api: AppFactory, users: Users, prefix: str
) -> None:
    # Nothing listens on port 1: every schedule attempt fails at once.
    api = await make_api(redis_key_prefix=prefix, taskiq_redis_url="redis://127.0.0.1:1/0")
    token = await users.one()
    screening = await api.new_screening()
    for seat in screening.seat_ids[:3]:
        booked = await api.book(token, screening.id, [seat])
        assert booked.status == 201, booked
        assert booked.body["status"] == "PENDING"
    mine = await api.get("/api/my-bookings/", token=token)
    assert len(mine.body) == 3


async def test_schedule_source_finds_schedules_left_from_earlier_minutes(
    rds: aioredis.Redis, prefix: str
) -> None:
    """A schedule due minutes ago (the scheduler was down) is found on the first read, even
    though our prefix contains ':' (upstream's key parsing did not allow that)."""
    source_prefix = f"{prefix}taskiq:schedule"
    writer = TaskScheduleSource(REDIS_URL, source_prefix)
    due = datetime.now(UTC) - timedelta(minutes=3)
    await writer.add_schedule(
        ScheduledTask(
            task_name=EXPIRE_TASK_NAME,
            labels={},
            args=[7],
            kwargs={},
            schedule_id=schedule_id(7),
            time=due,
        )
    )
    reader = TaskScheduleSource(REDIS_URL, source_prefix)
    try:
        found = await reader.get_schedules()
        assert [s.schedule_id for s in found] == [schedule_id(7)]
        await reader.delete_schedule(schedule_id(7))
        assert await reader.get_schedules() == []
    finally:
        for source in (reader, writer):
            await source._connection_pool.disconnect()


async def test_expiry_scheduler_off_writes_no_schedule(
    make_api: AppFactory, users: Users, rds: aioredis.Redis, prefix: str
) -> None:
    api = await make_api(redis_key_prefix=prefix, expiry_scheduler="off")
    token = await users.one()
    screening = await api.new_screening()
    booked = await api.book(token, screening.id, [screening.seat_ids[0]])
    assert booked.status == 201, booked
    assert [k async for k in rds.scan_iter(match=f"{prefix}taskiq:*")] == []
