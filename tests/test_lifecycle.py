"""Show lifecycle (issue 13, item 5): after a screening ends the real `cinema worker` moves
its CONFIRMED bookings to COMPLETED (a ticket checked in) or NO_SHOW, terminal and visible
in the API; PENDING holds of a started screening end and a payment that still comes is
refunded. A one-minute movie, with its screening's start moved into the past (time passing)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cinema.auth.model import Role
from cinema.booking import rules
from cinema.booking.model import BookingStatus, PaymentEventKind, PaymentStatus
from cinema.store.bookings import PgBookingStore
from cinema.store.pool import Pool
from tests.client import ApiClient, Screening, wait_for
from tests.conftest import JWT_SECRET, REDIS_URL, Users
from tests.payment_fixtures import CARD_OK, booking_of, deliver, paid_event
from tests.test_checkin import CONFIRM, check_in
from tests.workerproc import WorkerProcess, worker_env


async def short_screening(api: ApiClient, seats: int = 10, minutes: int = 1) -> Screening:
    """A screening of a `minutes`-long movie, starting tomorrow (bookable)."""
    staff = api.staff_token
    movie = await api.post(
        "/api/admin/movies/",
        {"title": "Short", "description": "", "duration_minutes": minutes},
        token=staff,
    )
    hall = await api.post(
        "/api/admin/halls/",
        {"name": "Small", "layout": {"rows": [{"label": "A", "seats": seats}]}},
        token=staff,
    )
    screening = await api.post(
        "/api/admin/screenings/",
        {
            "movie_id": movie.body["id"],
            "hall_id": hall.body["id"],
            "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "prices": {"standard": "10.00"},
            "currency": "usd",
        },
        token=staff,
    )
    assert screening.status == 201, screening
    seat_map = await api.get(f"/api/screenings/{screening.body['id']}/seats/")
    return Screening(
        screening.body["id"], hall.body["id"], [s["id"] for s in seat_map.body["seats"]]
    )


async def move_start(pool: Pool, screening_id: int, ago: timedelta) -> None:
    """Time passes: the screening started `ago` (its one-minute movie ended if ago > 1 min)."""
    await pool.execute(
        "UPDATE screenings SET starts_at = now() - $2::interval WHERE id = $1", screening_id, ago
    )


async def confirmed(
    api: ApiClient, pool: Pool, token: str, screening_id: int, seats: list[int]
) -> dict[str, Any]:
    booked = await api.book(token, screening_id, seats)
    assert booked.status == 201, booked
    await pool.execute(CONFIRM, booked.body["id"])
    reply = await api.get(f"/api/bookings/{booked.body['id']}/", token=token)
    assert reply.body["status"] == "CONFIRMED", reply
    return dict(reply.body)


@pytest.fixture
def start_worker(database_url: str, redis_prefix: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**settings: Any) -> WorkerProcess:
        prefix = f"{redis_prefix}life{secrets.token_hex(3)}:"
        env = worker_env(database_url, REDIS_URL, JWT_SECRET, prefix, **settings)
        worker = WorkerProcess(env)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.kill()
        print(f"--- worker log ---\n{worker.output()}")
        worker.close()


async def test_the_worker_completes_and_no_shows_after_the_screening_ends(
    api: ApiClient, users: Users, pool: Pool, start_worker: Any
) -> None:
    screening = await short_screening(api)
    seats = screening.seat_ids
    came, stayed_away, never_paid = await users.create(3)
    clerk = await users.one(role=Role.BOX_OFFICE)
    attended = await confirmed(api, pool, came, screening.id, seats[:2])
    absent = await confirmed(api, pool, stayed_away, screening.id, seats[2:3])
    pending = await api.book(never_paid, screening.id, seats[3:4])
    assert pending.status == 201
    first_code = attended["tickets"][0]["code"]
    assert (await check_in(api, clerk, first_code)).status == 200

    await move_start(pool, screening.id, timedelta(minutes=2))  # the one-minute movie is over
    worker = start_worker(expiry_reconcile_seconds=1)

    async def settled() -> bool:
        statuses = await pool.fetch(
            "SELECT status FROM bookings WHERE screening_id = $1", screening.id
        )
        return all(r["status"] not in ("PENDING", "CONFIRMED") for r in statuses)

    await wait_for(settled, within=30, what="the worker's show lifecycle round")
    seen = {
        b: (await booking_of(api, token, b))
        for b, token in (
            (attended["id"], came),
            (absent["id"], stayed_away),
            (pending.body["id"], never_paid),
        )
    }
    assert seen[attended["id"]]["status"] == "COMPLETED"
    assert seen[absent["id"]]["status"] == "NO_SHOW"
    assert seen[pending.body["id"]]["status"] == "CANCELLED"
    assert seen[pending.body["id"]]["cancel_reason"] == "screening_started"
    listed = (await api.get("/api/my-bookings/", token=stayed_away)).body
    assert [b["status"] for b in listed] == ["NO_SHOW"]

    # Terminal: no cancel, no second door scan, seats stay sold.
    for booking_id, token in ((attended["id"], came), (absent["id"], stayed_away)):
        refused = await api.delete(f"/api/bookings/{booking_id}/", token=token)
        assert refused.status == 409, refused
        assert refused.body["error"]["code"] == "booking_not_cancellable"
        assert "over" in refused.body["error"]["message"]
    late_scan = await check_in(api, clerk, attended["tickets"][1]["code"])
    assert (late_scan.status, late_scan.body["error"]["reason"]) == (409, "screening_over")
    statuses = await api.seat_statuses(screening.id)
    assert [statuses[s] for s in seats[:4]] == ["SOLD", "SOLD", "SOLD", "AVAILABLE"]

    # Idempotent: another round moves nothing; the invariant, straight from PostgreSQL.
    assert await PgBookingStore(pool).finish_ended(100) == []
    rows = await pool.fetch(
        "SELECT b.id, b.status AS booking, r.status AS ticket, r.checked_in_at"
        " FROM bookings b JOIN reservations r ON r.booking_id = b.id"
        " WHERE b.screening_id = $1 ORDER BY r.id",
        screening.id,
    )
    assert [(r["id"], r["booking"], r["ticket"]) for r in rows] == [
        (attended["id"], "COMPLETED", "COMPLETED"),
        (attended["id"], "COMPLETED", "COMPLETED"),
        (absent["id"], "NO_SHOW", "NO_SHOW"),
        (pending.body["id"], "CANCELLED", "CANCELLED"),
    ]
    assert worker.metric("cinema_bookings_show_over_total", status="COMPLETED") >= 1
    assert worker.metric("cinema_bookings_show_over_total", status="NO_SHOW") >= 1


async def test_check_ins_racing_the_lifecycle_job_are_counted_exactly(
    api: ApiClient, users: Users, pool: Pool
) -> None:
    """Door scans at the very moment the job runs: every booking whose ticket was admitted
    (200) is COMPLETED, every other one NO_SHOW, and a scan the job beat is 409."""
    screening = await short_screening(api, seats=20)
    clerk = await users.one(role=Role.BOX_OFFICE)
    tokens = await users.create(20)
    bookings = [
        await confirmed(api, pool, t, screening.id, [s])
        for t, s in zip(tokens, screening.seat_ids, strict=True)
    ]
    await move_start(pool, screening.id, timedelta(minutes=2))
    store = PgBookingStore(pool)

    async def job() -> int:
        return len(await store.finish_ended(7))  # small batches: several rounds interleave

    async def jobs() -> int:
        moved = 0
        while (n := await job()) > 0:
            moved += n
        return moved

    scans = [check_in(api, clerk, b["tickets"][0]["code"]) for b in bookings]
    results = await asyncio.gather(*scans, jobs(), jobs())
    replies, moved = results[:-2], results[-2:]
    assert sum(moved) == 20  # type: ignore[arg-type]
    admitted = {b["id"] for b, r in zip(bookings, replies, strict=True) if r.status == 200}
    for r in replies:
        assert r.status in (200, 409), r
        if r.status == 409:
            assert r.body["error"]["reason"] == "screening_over", r
    rows = await pool.fetch(
        "SELECT b.id, b.status, r.status AS ticket, r.checked_in_at IS NOT NULL AS inside"
        " FROM bookings b JOIN reservations r ON r.booking_id = b.id WHERE b.screening_id = $1",
        screening.id,
    )
    for row in rows:
        assert row["status"] == row["ticket"]
        assert row["inside"] == (row["id"] in admitted)
        assert row["status"] == ("COMPLETED" if row["inside"] else "NO_SHOW")


async def test_a_payment_after_the_start_is_refunded_not_confirmed(
    make_pay_api: Any, quiet_api: Any, stripe_fake: Any, users: Users, pool: Pool
) -> None:
    api = quiet_api.client
    screening = await short_screening(api)
    token = await users.one()
    booked = await api.book(token, screening.id, screening.seat_ids[:1])
    assert booked.status == 201, booked
    intent = booked.body["payment"]["payment_intent_id"]
    assert await stripe_fake.pay(intent, CARD_OK) == "succeeded"
    await move_start(pool, screening.id, timedelta(seconds=30))  # started, not over
    reply = await deliver(api, *paid_event(booked.body))
    assert (reply.status, reply.body["outcome"]) == (200, "refund_needed")
    after = await booking_of(api, token, booked.body["id"])
    assert (after["status"], after["cancel_reason"]) == ("CANCELLED", "screening_started")
    assert after["payment"]["status"] == "refunded"
    refunds = await stripe_fake.refunds(intent)
    assert [(r.amount, r.status) for r in refunds] == [(1000, "succeeded")]
    seat = await pool.fetchval(
        "SELECT status FROM reservations WHERE booking_id = $1", booked.body["id"]
    )
    assert seat == "CANCELLED"


def test_the_started_rule_stops_every_success() -> None:
    succeeded = PaymentEventKind.SUCCEEDED
    for status, payment in (
        (BookingStatus.PENDING, PaymentStatus.REQUIRES_PAYMENT),
        (BookingStatus.CANCELLED, PaymentStatus.REQUIRES_PAYMENT),
    ):
        assert rules.settle_action(status, payment, succeeded, started=True) is (
            rules.SettleAction.REFUND_STARTED
        )
    assert (
        rules.settle_action(BookingStatus.PENDING, PaymentStatus.REQUIRES_PAYMENT, succeeded)
        is rules.SettleAction.CONFIRM
    )
    for over in rules.SHOW_OVER:
        assert rules.settle_action(over, PaymentStatus.SUCCEEDED, succeeded, started=True) is (
            rules.SettleAction.IGNORE
        )
        assert not rules.can_transition(over, BookingStatus.CANCELLED)
    assert rules.can_transition(BookingStatus.CONFIRMED, BookingStatus.NO_SHOW)


async def test_a_cancelled_screening_is_left_to_its_refunds(
    api: ApiClient, users: Users, pool: Pool
) -> None:
    """Its bookings are the cancellation's to refund: finished first, they could not be."""
    screening = await short_screening(api)
    booking = await confirmed(api, pool, await users.one(), screening.id, screening.seat_ids[:1])
    await move_start(pool, screening.id, timedelta(minutes=5))
    await pool.execute("UPDATE screenings SET cancelled_at = now() WHERE id = $1", screening.id)
    store = PgBookingStore(pool)
    while await store.finish_ended(100):
        pass  # other tests' ended screenings
    status = await pool.fetchval("SELECT status FROM bookings WHERE id = $1", booking["id"])
    assert status == "CONFIRMED"
