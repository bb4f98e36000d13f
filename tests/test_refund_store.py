"""The one refund transaction (cinema_refund_tickets through PgRefundStore) on real
PostgreSQL: seats freed at once, never more refunded than was paid, each ticket once, even
when many refunds of one booking race."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import pytest

from cinema.pricing.model import TicketLine
from cinema.refunds.model import RefundRequest, RefundSource
from cinema.refunds.rules import ticket_shares
from cinema.store.pool import create_pool
from cinema.store.refunds import PgRefundStore
from tests.client import ApiClient
from tests.test_checkin import CONFIRM

FEES = {"per_ticket": "0.35", "percent": "0"}
FEES_KWD = {"per_ticket": "0", "percent": "1"}  # 1 % of 9.990 KWD: 0.0999, rounded once


async def confirmed(api: ApiClient, pool: Any, token: str, seats: int, **screening: Any) -> Any:
    made = await api.new_screening(**screening)
    booked = await api.book(token, made.id, made.seat_ids[:seats])
    assert booked.status == 201, booked
    await pool.execute(CONFIRM, booked.body["id"])
    return booked.body, made


def shares_of(booking: dict[str, Any]) -> dict[int, int]:
    lines = [
        TicketLine(t["seat_id"], t["category"], t["ticket_type"], t["price_minor"])
        for t in booking["tickets"]
    ]
    return ticket_shares(booking["amount_minor"], booking["currency"], lines)


def request(booking_id: int, seats: tuple[int, ...] | None = None) -> RefundRequest:
    return RefundRequest(booking_id, "test", RefundSource.STAFF, None, seats)


async def invariant(pool: Any, booking_id: int) -> dict[str, Any]:
    """Read from PostgreSQL: refunds add up, each ticket at most once, never over the amount."""
    row = await pool.fetchrow(
        "SELECT b.amount, b.refunded_minor,"
        " (SELECT coalesce(sum(amount_minor), 0) FROM refunds WHERE booking_id = b.id) AS refunds,"
        " (SELECT coalesce(sum(i.amount_minor), 0) FROM refund_items i JOIN refunds r"
        "   ON r.id = i.refund_id WHERE r.booking_id = b.id) AS items,"
        " (SELECT count(*) FROM refund_items i JOIN refunds r ON r.id = i.refund_id"
        "   WHERE r.booking_id = b.id) AS item_count,"
        " (SELECT count(DISTINCT i.reservation_id) FROM refund_items i JOIN refunds r"
        "   ON r.id = i.refund_id WHERE r.booking_id = b.id) AS tickets,"
        " (SELECT count(*) FROM reservations WHERE booking_id = b.id AND status = 'CANCELLED')"
        "   AS freed, b.status, b.cancel_reason"
        " FROM bookings b WHERE b.id = $1",
        booking_id,
    )
    assert row["refunded_minor"] == row["refunds"] == row["items"] <= row["amount"]
    assert row["item_count"] == row["tickets"] == row["freed"]
    return dict(row)


async def test_full_refund_frees_the_seats_and_ends_the_booking(
    api: ApiClient, users: Any, pool: Any
) -> None:
    owner = await users.one()
    booking, made = await confirmed(api, pool, owner, 3, fees=FEES)
    store = PgRefundStore(pool)
    recorded = await store.record(request(booking["id"]), shares_of(booking), whole=True)
    assert recorded.refused is None and recorded.seat_ids == tuple(made.seat_ids[:3])
    state = await invariant(pool, booking["id"])
    assert state["refunded_minor"] == booking["amount_minor"] == 3 * 1035
    assert (state["status"], state["cancel_reason"]) == ("CANCELLED", "refunded")
    # Free in PostgreSQL at once (the service also clears the filter's keys: test_refunds.py).
    statuses = await api.seat_statuses(made.id)
    assert [statuses[s] for s in made.seat_ids[:3]] == ["AVAILABLE"] * 3
    twice = await store.record(request(booking["id"]), shares_of(booking), whole=True)
    assert twice.refused == "already_refunded"


async def test_partial_refunds_by_seat_add_up_to_the_amount(
    api: ApiClient, users: Any, pool: Any
) -> None:
    booking, made = await confirmed(api, pool, await users.one(), 3, currency="kwd",
                                    prices={"standard": "3.330"}, fees=FEES_KWD)  # fmt: skip
    shares = shares_of(booking)
    store = PgRefundStore(pool)
    first = await store.record(request(booking["id"], (made.seat_ids[1],)), shares, whole=False)
    assert first.refused is None
    state = await invariant(pool, booking["id"])
    assert state["status"] == "CONFIRMED"
    assert state["refunded_minor"] == shares[made.seat_ids[1]]
    same = await store.record(request(booking["id"], (made.seat_ids[1],)), shares, whole=False)
    assert (same.refused, same.seat_ids) == ("seats_already_refunded", (made.seat_ids[1],))
    foreign = await store.record(request(booking["id"], (made.seat_ids[5],)), shares, whole=False)
    assert (foreign.refused, foreign.seat_ids) == ("seats_not_in_booking", (made.seat_ids[5],))
    rest = await store.record(request(booking["id"]), shares, whole=True)
    assert rest.seat_ids == (made.seat_ids[0], made.seat_ids[2])
    state = await invariant(pool, booking["id"])
    assert state["refunded_minor"] == booking["amount_minor"]
    assert state["status"] == "CANCELLED"


async def test_a_pending_booking_is_refused(api: ApiClient, users: Any, pool: Any) -> None:
    made = await api.new_screening()
    booked = await api.book(await users.one(), made.id, made.seat_ids[:1])
    store = PgRefundStore(pool)
    recorded = await store.record(request(booked.body["id"]), shares_of(booked.body), whole=True)
    assert recorded.refused == "booking_pending"
    assert await pool.fetchval("SELECT count(*) FROM refunds WHERE booking_id = $1",
                               booked.body["id"]) == 0  # fmt: skip


async def test_racing_refunds_of_one_booking_never_refund_a_ticket_twice(
    api: ApiClient, users: Any, pool: Any, database_url: str
) -> None:
    booking, made = await confirmed(api, pool, await users.one(), 6, fees=FEES)
    shares = shares_of(booking)
    seats = made.seat_ids[:6]
    rng = random.Random(13)
    asks = [tuple(sorted(rng.sample(seats, rng.randint(1, 3)))) for _ in range(30)]
    asks += [None] * 5  # and a few "refund everything left"
    rng.shuffle(asks)
    big = await create_pool(database_url, 20, 20)  # the project's pool: its codecs
    try:
        store = PgRefundStore(big)
        results = await asyncio.gather(
            *(store.record(request(booking["id"], a), shares, whole=a is None) for a in asks)
        )
    finally:
        await big.close()
    won = [r for r in results if r.refused is None]
    refunded_seats = [s for r in won for s in r.seat_ids]
    assert sorted(refunded_seats) == sorted(set(refunded_seats))
    assert {r.refused for r in results} <= {
        None, "seats_already_refunded", "already_refunded", "booking_not_refundable",
    }  # fmt: skip
    state = await invariant(pool, booking["id"])
    assert state["refunded_minor"] == sum(shares[s] for s in refunded_seats)


async def test_the_database_refuses_refunding_more_than_was_paid(
    api: ApiClient, users: Any, pool: Any
) -> None:
    booking, _ = await confirmed(api, pool, await users.one(), 1)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE bookings SET refunded_minor = amount + 1 WHERE id = $1", booking["id"]
        )
    ticket = await pool.fetchval("SELECT id FROM reservations WHERE booking_id = $1", booking["id"])
    refund = await pool.fetchval(
        "INSERT INTO refunds (booking_id, amount_minor, currency, reason, source, idempotency_key)"
        " VALUES ($1, 1, 'usd', 't', 'staff', 'k-' || $1::bigint) RETURNING id",
        booking["id"],
    )
    await pool.execute(
        "INSERT INTO refund_items (refund_id, reservation_id, seat_id, amount_minor)"
        " VALUES ($1, $2, 0, 1)", refund, ticket,
    )  # fmt: skip
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            "INSERT INTO refund_items (refund_id, reservation_id, seat_id, amount_minor)"
            " VALUES ($1, $2, 0, 1)", refund, ticket,
        )  # fmt: skip
