"""Unpaid holds end at their deadline: with a real `cinema worker` process, with the worker
killed and restarted, and with no worker at all. HOLD_TTL_SECONDS=2 throughout."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from cinema.booking.model import BookingStatus
from cinema.holds import seat_key
from cinema.store.bookings import PgBookingStore
from cinema.store.pool import Pool
from tests.client import ApiClient, wait_for
from tests.conftest import JWT_SECRET, REDIS_URL, AppFactory, Users
from tests.workerproc import WorkerProcess, worker_env

TTL = 2


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    # A sub-prefix per test: its own seat keys, Taskiq queue and schedules.
    return f"{redis_prefix}exp{secrets.token_hex(3)}:"


@pytest.fixture
async def expiry_api(make_api: AppFactory, prefix: str) -> ApiClient:
    return await make_api(hold_ttl_seconds=TTL, redis_key_prefix=prefix)


@pytest.fixture
def start_worker(database_url: str, prefix: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**settings: Any) -> WorkerProcess:
        settings.setdefault("expiry_reconcile_seconds", 3600)  # the task path does the work
        env = worker_env(database_url, REDIS_URL, JWT_SECRET, prefix, **settings)
        worker = WorkerProcess(env)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.kill()
        print(f"--- worker log ({worker.env['REDIS_KEY_PREFIX']}) ---\n{worker.output()}")
        worker.close()


async def _booking(api: ApiClient, token: str, booking_id: int) -> dict[str, Any]:
    reply = await api.get(f"/api/bookings/{booking_id}/", token=token)
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.body
    return body


async def _seat_keys_exist(
    rds: aioredis.Redis, prefix: str, screening_id: int, seats: list[int]
) -> int:
    return int(await rds.exists(*(seat_key(prefix, screening_id, s) for s in seats)))


def _until(iso: str) -> float:
    return (datetime.fromisoformat(iso) - datetime.now(UTC)).total_seconds()


async def test_a_booking_expires_and_its_seat_is_free_again(
    expiry_api: ApiClient, users: Users, start_worker: Any, rds: aioredis.Redis, prefix: str
) -> None:
    worker = start_worker()

    async def start_up_sweeps_done() -> bool:
        return worker.metric("cinema_expiry_reconciliations_total") >= 2

    # After its two start-up sweeps the reconciler sleeps for an hour here: from then on
    # only the scheduled task can end a booking.
    await wait_for(start_up_sweeps_done, what="the worker's start-up sweeps")
    alice, bob = await users.create(2)
    screening = await expiry_api.new_screening()
    seat = screening.seat_ids[3]
    booked = await expiry_api.book(alice, screening.id, [seat])
    assert booked.status == 201, booked
    booking_id = booked.body["id"]
    assert await _seat_keys_exist(rds, prefix, screening.id, [seat]) == 1
    assert (await expiry_api.seat_statuses(screening.id))[seat] == "LOCKED"

    async def cancelled() -> bool:
        return (await _booking(expiry_api, alice, booking_id))["status"] == "CANCELLED"

    await wait_for(cancelled, what="the booking to expire")
    ended = await _booking(expiry_api, alice, booking_id)
    assert ended["cancel_reason"] == "expired"
    assert datetime.fromisoformat(ended["updated_at"]) >= datetime.fromisoformat(
        ended["expires_at"]
    )

    async def keys_gone() -> bool:
        return await _seat_keys_exist(rds, prefix, screening.id, [seat]) == 0

    # Released by the worker, well before Redis would drop it (PX = TTL + 5 s grace).
    await wait_for(keys_gone, within=3, what="the seat's Redis key to be released")
    assert (await expiry_api.seat_statuses(screening.id))[seat] == "AVAILABLE"
    again = await expiry_api.book(bob, screening.id, [seat])
    assert again.status == 201, again

    # The scheduled task did it (its metrics are recorded just after the commit).
    async def counted() -> bool:
        return worker.metric("cinema_bookings_expired_total") >= 1

    await wait_for(counted, within=5, what="the expiry to be counted")
    assert worker.metric("cinema_booking_expiry_lateness_seconds_count", path="task") == 1


async def test_paid_and_user_cancelled_bookings_are_left_alone(
    expiry_api: ApiClient, users: Users, start_worker: Any, pool: Pool
) -> None:
    worker = start_worker()
    alice = await users.one()
    screening = await expiry_api.new_screening()
    paid = await expiry_api.book(alice, screening.id, [screening.seat_ids[0]])
    dropped = await expiry_api.book(alice, screening.id, [screening.seat_ids[1]])
    assert paid.status == dropped.status == 201
    # Paid before the deadline (the payments module does this on Stripe's webhook).
    store = PgBookingStore(pool)
    confirmed = await store.end_booking(paid.body["id"], BookingStatus.CONFIRMED, None)
    assert confirmed is not None
    assert confirmed.status is BookingStatus.CONFIRMED
    cancel = await expiry_api.delete(f"/api/bookings/{dropped.body['id']}/", token=alice)
    assert cancel.status == 200, cancel

    async def both_tasks_ran() -> bool:
        return worker.metric("cinema_expiry_tasks_total", outcome="noop") >= 2

    await wait_for(both_tasks_ran, what="both expiry tasks to run")
    assert (await _booking(expiry_api, alice, paid.body["id"]))["status"] == "CONFIRMED"
    after = await _booking(expiry_api, alice, dropped.body["id"])
    assert after["status"] == "CANCELLED"
    assert after["cancel_reason"] == "cancelled_by_user"
    statuses = await expiry_api.seat_statuses(screening.id)
    assert statuses[screening.seat_ids[0]] == "SOLD"
    assert statuses[screening.seat_ids[1]] == "AVAILABLE"
    assert worker.metric("cinema_booking_expiry_lateness_seconds_count", path="task") == 0


async def test_worker_killed_with_tasks_scheduled_catches_up_after_restart(
    expiry_api: ApiClient,
    users: Users,
    start_worker: Any,
    rds: aioredis.Redis,
    prefix: str,
    pool: Pool,
) -> None:
    worker = start_worker()
    tokens = await users.create(4)
    screening = await expiry_api.new_screening()
    seats = screening.seat_ids[:8]
    booked = await asyncio.gather(
        *(expiry_api.book(tokens[i % 4], screening.id, [s]) for i, s in enumerate(seats))
    )
    assert all(b.status == 201 for b in booked), booked
    ids = [b.body["id"] for b in booked]
    worker.kill()  # SIGKILL while all eight tasks are still scheduled

    # While no worker runs, readers already see the lapsed holds as free...
    last_deadline = max(_until(b.body["expires_at"]) for b in booked)
    await asyncio.sleep(max(last_deadline, 0) + 0.2)  # until every deadline has passed
    statuses = await expiry_api.seat_statuses(screening.id)
    assert all(statuses[s] == "AVAILABLE" for s in seats), statuses
    # ...though nothing has cancelled them yet.
    pending = await pool.fetchval(
        "SELECT count(*) FROM bookings WHERE id = ANY($1::bigint[]) AND status = 'PENDING'", ids
    )
    assert pending == len(ids)

    restarted = start_worker()

    async def all_ended() -> bool:
        left = await pool.fetchval(
            "SELECT count(*) FROM bookings WHERE id = ANY($1::bigint[]) AND status = 'PENDING'",
            ids,
        )
        return int(left) == 0

    await wait_for(all_ended, what="every overdue booking to end after the restart")
    reasons = await pool.fetch("SELECT cancel_reason FROM bookings WHERE id = ANY($1)", ids)
    assert {r["cancel_reason"] for r in reasons} == {"expired"}

    async def keys_gone() -> bool:
        return await _seat_keys_exist(rds, prefix, screening.id, seats) == 0

    await wait_for(keys_gone, within=5, what="the Redis keys to be released")

    async def counted() -> bool:  # >=: the reconciler also ends other tests' leftovers
        return restarted.metric("cinema_bookings_expired_total") >= len(ids)

    await wait_for(counted, within=5, what="every expiry to be counted")


async def test_worker_down_entirely_the_seat_is_still_bookable(
    expiry_api: ApiClient, users: Users, rds: aioredis.Redis, prefix: str
) -> None:
    alice, bob = await users.create(2)
    screening = await expiry_api.new_screening()
    seat = screening.seat_ids[5]
    booked = await expiry_api.book(alice, screening.id, [seat])
    assert booked.status == 201, booked
    refused = await expiry_api.book(bob, screening.id, [seat])
    assert refused.status == 409, refused

    await asyncio.sleep(max(_until(booked.body["expires_at"]), 0) + 0.1)
    # No worker: the Redis key outlives the deadline (PX = TTL + grace)...
    key = seat_key(prefix, screening.id, seat)
    value = await rds.get(key)
    assert value is not None
    _, _, deadline_ms = value.decode().rpartition("|")
    assert int(deadline_ms) <= time.time() * 1000
    assert (await expiry_api.seat_statuses(screening.id))[seat] == "AVAILABLE"
    # ...yet the claim script treats a key past its deadline as free, and PostgreSQL
    # cancels the lapsed hold on the spot.
    again = await expiry_api.book(bob, screening.id, [seat])
    assert again.status == 201, again
    old = await _booking(expiry_api, alice, booked.body["id"])
    assert old["status"] == "CANCELLED"
    assert old["cancel_reason"] == "expired"
    new_value = await rds.get(key)
    assert new_value is not None and new_value != value


async def test_worker_stops_cleanly_on_sigterm(start_worker: Any) -> None:
    worker = start_worker()
    assert worker.terminate(timeout=20) == 0
    assert "expiry worker stopped" in worker.output()


async def test_two_workers_send_and_run_each_task_once(
    expiry_api: ApiClient,
    users: Users,
    start_worker: Any,
    pool: Pool,
    rds: aioredis.Redis,
    prefix: str,
) -> None:
    workers = [start_worker(), start_worker()]
    token = await users.one()
    screening = await expiry_api.new_screening()
    booked = await asyncio.gather(
        *(expiry_api.book(token, screening.id, [s]) for s in screening.seat_ids[:6])
    )
    assert all(b.status == 201 for b in booked), booked
    ids = [b.body["id"] for b in booked]

    def runs(outcome: str) -> float:
        return sum(w.metric("cinema_expiry_tasks_total", outcome=outcome) for w in workers)

    async def all_ran() -> bool:
        return runs("expired") + runs("noop") >= len(ids)

    await wait_for(all_ran, what="both workers together to run every expiry task")

    async def all_tasks_done() -> bool:
        queued = int(await rds.llen(f"{prefix}taskiq:expiry"))
        running = sum(w.metric("cinema_expiry_tasks_in_flight") for w in workers)
        return queued == 0 and running == 0

    await wait_for(all_tasks_done, what="every expiry task to finish")
    # Each schedule was claimed by one scheduler: one task ran per booking. (A start-up
    # sweep of the reconciler may have ended a booking first, making its task a no-op.)
    assert runs("expired") + runs("noop") == len(ids)
    left = await pool.fetchval(
        "SELECT count(*) FROM bookings WHERE id = ANY($1::bigint[]) AND status = 'PENDING'", ids
    )
    assert left == 0


async def test_tasks_lost_in_a_killed_worker_end_soon_after_restart(
    expiry_api: ApiClient, users: Users, start_worker: Any, pool: Pool
) -> None:
    """Tasks the worker had received and was holding until their deadline die with it; the
    restarted worker's second sweep, shortly after start-up, ends those bookings."""
    worker = start_worker()
    token = await users.one()
    screening = await expiry_api.new_screening()
    booked = await asyncio.gather(
        *(expiry_api.book(token, screening.id, [s]) for s in screening.seat_ids[:4])
    )
    assert all(b.status == 201 for b in booked), booked
    ids = [b.body["id"] for b in booked]

    async def holding_tasks() -> bool:
        # Usually the worker holds tasks a moment before their deadlines; with a 2 s TTL a
        # schedule can also be read only on the tick it is due, so accept a first expiry.
        held = worker.metric("cinema_expiry_tasks_in_flight")
        return held >= 1 or worker.metric("cinema_expiry_tasks_total", outcome="expired") >= 1

    await wait_for(holding_tasks, what="the worker to hold expiry tasks")
    worker.kill()
    start_worker()  # reconciles hourly: only its start-up sweeps can end these bookings

    async def all_ended() -> bool:
        left = await pool.fetchval(
            "SELECT count(*) FROM bookings WHERE id = ANY($1::bigint[]) AND status = 'PENDING'",
            ids,
        )
        return int(left) == 0

    await wait_for(all_ended, what="the restarted worker to end the lost bookings")


async def test_with_taskiqs_redis_down_the_reconciler_still_ends_bookings(
    expiry_api: ApiClient, users: Users, start_worker: Any, pool: Pool
) -> None:
    # The worker's queue and schedules are unreachable (nothing listens on port 1); its
    # reconciler, which needs only PostgreSQL, ends the booking all the same.
    worker = start_worker(taskiq_redis_url="redis://127.0.0.1:1/0", expiry_reconcile_seconds=1)
    token = await users.one()
    screening = await expiry_api.new_screening()
    booked = await expiry_api.book(token, screening.id, [screening.seat_ids[0]])
    assert booked.status == 201, booked

    async def ended() -> bool:
        status = await pool.fetchval("SELECT status FROM bookings WHERE id = $1", booked.body["id"])
        return bool(status == "CANCELLED")

    await wait_for(ended, what="the reconciler to end the booking")

    async def counted() -> bool:
        # recorded just after the commit; >=: the reconciler sweeps the whole database,
        # which other tests share
        lateness = worker.metric("cinema_booking_expiry_lateness_seconds_count", path="reconciler")
        return lateness >= 1

    await wait_for(counted, within=5, what="the reconciler's lateness to be recorded")
    assert worker.proc is not None and worker.proc.poll() is None  # still running
    assert worker.terminate() == 0
