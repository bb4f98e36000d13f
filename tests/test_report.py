"""The sales report (issue 13, item 7): a screening with every kind of booking (pending,
confirmed, checked in, user-cancelled, expired, refunded, promo code, child tickets, then
COMPLETED / NO_SHOW after it ends) and a general-admission one; every figure is checked
against hand-counted values and against the bookings table itself, in JSON and in CSV."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import timedelta
from typing import Any

from cinema.api.report import CSV_COLUMNS
from cinema.audit import ACTOR, Actor
from cinema.auth.model import Role
from cinema.booking.model import BookingStatus
from cinema.refunds.model import (
    ProviderRefund,
    RefundEvent,
    RefundRequest,
    RefundSource,
    RefundStatus,
)
from cinema.store.bookings import PgBookingStore
from cinema.store.pool import Pool
from cinema.store.refunds import PgRefundStore
from tests.client import ApiClient
from tests.conftest import Users
from tests.test_checkin import CONFIRM, check_in, user_id_of
from tests.test_lifecycle import move_start
from tests.test_refund_store import shares_of

LAYOUT = {
    "rows": [
        {"label": "A", "seats": 6},
        {"label": "B", "category": "vip", "seats": 4},
    ]
}
TYPES = [
    {"code": "adult", "name": "Adult"},
    {"code": "child", "name": "Child", "discount": "3.00"},
]


def report_path(screening_id: int, query: str = "") -> str:
    return f"/api/admin/screenings/{screening_id}/report{query}"


async def report(api: ApiClient, screening_id: int) -> dict[str, Any]:
    reply = await api.get(report_path(screening_id), token=api.staff_token)
    assert reply.status == 200, reply
    return dict(reply.body)


async def book(api: ApiClient, token: str, screening_id: int, **body: Any) -> dict[str, Any]:
    reply = await api.book_with(token, screening_id, **body)
    assert reply.status == 201, reply
    return dict(reply.body)


async def table_says(pool: Pool, screening_id: int) -> dict[str, int]:
    """The same figures, counted straight from bookings and reservations."""
    sold = "('CONFIRMED', 'COMPLETED', 'NO_SHOW')"
    row = await pool.fetchrow(
        f"""SELECT
          (SELECT coalesce(sum(subtotal_minor), 0) FROM bookings
            WHERE screening_id = $1 AND status IN {sold}) AS gross,
          (SELECT coalesce(sum(discount_minor), 0) FROM bookings
            WHERE screening_id = $1 AND status IN {sold}) AS discounts,
          (SELECT coalesce(sum(fees_minor), 0) FROM bookings
            WHERE screening_id = $1 AND status IN {sold}) AS fees,
          (SELECT coalesce(sum(amount), 0) FROM bookings
            WHERE screening_id = $1 AND status IN {sold}) AS net,
          (SELECT count(*) FROM reservations r JOIN bookings b ON b.id = r.booking_id
            WHERE b.screening_id = $1 AND b.status IN {sold}) AS sold,
          (SELECT count(*) FROM reservations
            WHERE screening_id = $1 AND checked_in_at IS NOT NULL) AS checked_in""",
        screening_id,
    )
    return dict(row)


def assert_matches_table(body: dict[str, Any], table: dict[str, int]) -> None:
    revenue = body["revenue"]
    assert revenue["gross_minor"] == table["gross"]
    assert revenue["discounts_minor"] == table["discounts"]
    assert revenue["fees_minor"] == table["fees"]
    assert revenue["net_minor"] == table["net"]
    assert revenue["net_minor"] == (
        revenue["gross_minor"] - revenue["discounts_minor"] + revenue["fees_minor"]
    )
    assert sum(line["amount_minor"] for line in revenue["lines"]) == table["gross"]
    assert sum(line["tickets"] for line in revenue["lines"]) == table["sold"]
    assert body["places"]["sold"] == table["sold"]
    assert body["places"]["checked_in"] == table["checked_in"]
    places = body["places"]
    assert places["available"] + places["held"] + places["sold"] == places["total"]


async def test_every_kind_of_booking_adds_up(api: ApiClient, users: Users, pool: Pool) -> None:
    staff = api.staff_token
    code = "REP" + secrets.token_hex(3).upper()
    promo = await api.post(
        "/api/admin/promo-codes/",
        {"code": code, "kind": "percent", "value": "10", "max_uses": 10},
        token=staff,
    )
    assert promo.status == 201, promo
    screening = await api.new_screening(
        layout=LAYOUT,
        prices={"standard": "10.00", "vip": "15.00"},
        ticket_types=TYPES,
        fees={"per_ticket": "0.75"},
    )
    a1, a2, a3, a4, a5, a6, b1, b2, _b3, _b4 = screening.seat_ids
    sid = screening.id
    t = await users.create(7)
    clerk = await users.one(role=Role.BOX_OFFICE)
    store = PgBookingStore(pool)

    pending = await book(api, t[0], sid, seat_ids=[a1])
    family = await book(
        api, t[1], sid, seats=[{"seat_id": a2}, {"seat_id": a3, "ticket_type": "child"}]
    )
    promo_booking = await book(api, t[2], sid, seat_ids=[b1], promo_code=code)
    child_vip = await book(api, t[3], sid, seats=[{"seat_id": b2, "ticket_type": "child"}])
    user_cancelled = await book(api, t[4], sid, seat_ids=[a4])
    expired = await book(api, t[5], sid, seat_ids=[a5])
    refunded = await book(api, t[6], sid, seat_ids=[a6])
    for b in (family, promo_booking, child_vip):
        await pool.execute(CONFIRM, b["id"])
    assert (await api.delete(f"/api/bookings/{user_cancelled['id']}/", token=t[4])).status == 200
    for b in (expired, refunded):
        await store.end_booking(b["id"], BookingStatus.CANCELLED, "expired")
    # A late payment the settlement refunded (what refund_needed leaves behind).
    await pool.execute(
        "UPDATE bookings SET payment_status = 'refunded' WHERE id = $1", refunded["id"]
    )
    owner_view = await api.get(f"/api/bookings/{family['id']}/", token=t[1])
    assert (await check_in(api, clerk, owner_view.body["tickets"][0]["code"])).status == 200

    body = await report(api, sid)
    assert body["screening_id"] == sid and body["currency"] == "usd"
    assert body["general_admission"] is False
    assert body["places"] == {"total": 10, "available": 5, "held": 1, "sold": 4, "checked_in": 1}
    assert body["bookings"]["by_status"] == {
        "PENDING": 1, "CONFIRMED": 3, "CANCELLED": 3, "COMPLETED": 0, "NO_SHOW": 0,
    }  # fmt: skip
    assert body["bookings"]["cancelled_by_reason"] == {"cancelled_by_user": 1, "expired": 2}
    lines = {(x["category"], x["ticket_type"]): x for x in body["revenue"]["lines"]}
    assert {k: (v["tickets"], v["amount"], v["amount_minor"]) for k, v in lines.items()} == {
        ("standard", "adult"): (1, "10.00", 1000),
        ("standard", "child"): (1, "7.00", 700),
        ("vip", "adult"): (1, "15.00", 1500),
        ("vip", "child"): (1, "12.00", 1200),
    }
    revenue = body["revenue"]
    assert (revenue["sold_bookings"], revenue["gross"], revenue["fees"]) == (3, "44.00", "3.00")
    assert revenue["discounts_minor"] == promo_booking["discount_minor"] > 0
    assert revenue["net_minor"] == sum(b["total_minor"] for b in (family, promo_booking, child_vip))
    assert body["promo_codes"] == [
        {
            "code": code,
            "bookings": 1,
            "discount": promo_booking["discount"],
            "discount_minor": promo_booking["discount_minor"],
        }
    ]
    late = {"amount": refunded["total"], "amount_minor": refunded["total_minor"]}
    assert body["refunds"] == {
        "count": 1,
        "pending": 0,
        "failed": 0,
        **late,
        "pending_amount": "0.00",
        "pending_amount_minor": 0,
        "failed_amount": "0.00",
        "failed_amount_minor": 0,
        "by_source": {"late_payment": {"count": 1, **late}},
    }
    assert (revenue["refunded_minor"], revenue["kept_minor"]) == (0, revenue["net_minor"])
    assert body["no_shows"] == {"bookings": 0, "tickets": 0}
    assert_matches_table(body, await table_says(pool, sid))

    # The screening ends; the worker's two steps run (tests/test_lifecycle.py runs the worker).
    await move_start(pool, sid, timedelta(minutes=200))
    await store.end_started(100)
    await store.finish_ended(100)
    after = await report(api, sid)
    assert after["places"] == {"total": 10, "available": 6, "held": 0, "sold": 4, "checked_in": 1}
    assert after["bookings"]["by_status"] == {
        "PENDING": 0, "CONFIRMED": 0, "CANCELLED": 4, "COMPLETED": 1, "NO_SHOW": 2,
    }  # fmt: skip
    assert after["bookings"]["cancelled_by_reason"]["screening_started"] == 1
    ended = "SELECT cancel_reason FROM bookings WHERE id = $1"
    assert await pool.fetchval(ended, pending["id"]) == "screening_started"
    assert after["no_shows"] == {"bookings": 2, "tickets": 2}
    assert after["revenue"] == body["revenue"]  # no-shows paid: revenue stays
    assert_matches_table(after, await table_says(pool, sid))

    reply = await api.get(report_path(sid, "?format=csv"), token=staff)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(reply.body)))
    assert tuple(rows[0]) == CSV_COLUMNS
    by_key = {(r[0], r[1], r[2]): r for r in rows[1:]}
    assert by_key[("places", "sold", "")][3] == "4"
    assert by_key[("bookings", "NO_SHOW", "")][3] == "2"
    assert by_key[("revenue", "vip", "child")][3:] == ["1", "12.00", "1200", "usd"]
    net = by_key[("totals", "net", "")]
    assert (net[4], int(net[5])) == (after["revenue"]["net"], after["revenue"]["net_minor"])
    assert by_key[("promo_code", code, "")][5] == str(promo_booking["discount_minor"])
    assert by_key[("refunds", "refunds", "0 pending")][3:6] == [
        "1", refunded["total"], str(refunded["total_minor"]),
    ]  # fmt: skip
    assert by_key[("no_shows", "tickets", "")][3] == "2"
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)


async def test_general_admission_places(api: ApiClient, users: Users, pool: Pool) -> None:
    sid = await api.new_ga_screening(capacity=5, price="20.00")
    paid, holding = await users.create(2)
    two = await api.book_places(paid, sid, 2)
    assert two.status == 201, two
    await pool.execute(CONFIRM, two.body["id"])
    assert (await api.book_places(holding, sid, 1)).status == 201
    body = await report(api, sid)
    assert body["general_admission"] is True
    assert body["places"] == {"total": 5, "available": 2, "held": 1, "sold": 2, "checked_in": 0}
    assert body["revenue"]["lines"] == [
        {
            "category": "general",
            "ticket_type": "adult",
            "tickets": 2,
            "amount": "40.00",
            "amount_minor": 4000,
        }
    ]
    assert body["revenue"]["net"] == "40.00"
    assert_matches_table(body, await table_says(pool, sid))


async def test_refunds_come_from_the_refunds_table(
    api: ApiClient, users: Users, pool: Pool
) -> None:
    """A partial refund by staff and a whole one by a customer's cancel: the refunds table's
    figures, the refunded tickets out of the lines, kept = net - partial refunds."""
    screening = await api.new_screening(fees={"per_ticket": "0.50"})
    sid, seats = screening.id, screening.seat_ids
    partial_owner, whole_owner = await users.create(2)
    partial = await book(api, partial_owner, sid, seat_ids=seats[:3])
    whole = await book(api, whole_owner, sid, seat_ids=seats[3:5])
    for b in (partial, whole):
        await pool.execute(CONFIRM, b["id"])
    store = PgRefundStore(pool)
    shares = shares_of(partial)
    staff = ACTOR.set(Actor(user_id_of(api.staff_token), "admin", "req-refund", "10.1.2.3"))
    try:
        one = RefundRequest(partial["id"], "seat broken", RefundSource.STAFF, None, (seats[1],))
        assert (await store.record(one, shares, whole=False)).refused is None
    finally:
        ACTOR.reset(staff)
    all_of_it = RefundRequest(whole["id"], "cannot come", RefundSource.CUSTOMER, None)
    assert (await store.record(all_of_it, shares_of(whole), whole=True)).refused is None

    body = await report(api, sid)
    assert body["places"]["sold"] == 2  # seats 1 and 3 of the partial booking
    assert body["bookings"]["cancelled_by_reason"] == {"refunded": 1}
    assert [line["tickets"] for line in body["revenue"]["lines"]] == [2]
    revenue = body["revenue"]
    assert revenue["net_minor"] == partial["total_minor"]
    assert revenue["refunded_minor"] == shares[seats[1]]
    assert revenue["kept_minor"] == partial["total_minor"] - shares[seats[1]]
    refunds = body["refunds"]
    # No payment provider here: nothing to give back at one, so done at once (db/013).
    assert (refunds["count"], refunds["pending"], refunds["failed"]) == (2, 0, 0)
    assert refunds["amount_minor"] == shares[seats[1]] + whole["total_minor"]
    assert refunds["by_source"]["staff"]["amount_minor"] == shares[seats[1]]
    assert refunds["by_source"]["customer"]["amount_minor"] == whole["total_minor"]
    table = await pool.fetchval(
        "SELECT sum(r.amount_minor) FROM refunds r JOIN bookings b ON b.id = r.booking_id"
        " WHERE b.screening_id = $1",
        sid,
    )
    assert refunds["amount_minor"] == table

    # The audit log has each step, the staff's with who asked.
    found = await api.get(f"/api/admin/audit/?booking_id={partial['id']}", token=api.staff_token)
    actions = [e["action"] for e in found.body]
    assert actions[:3] == ["booking.payment_refunded", "ticket.refunded", "refund.created"]
    created = found.body[2]
    assert (created["actor_role"], created["request_id"], created["client_address"]) == (
        "admin",
        "req-refund",
        "10.1.2.3",
    )
    assert created["after"]["amount_minor"] == shares[seats[1]]
    assert found.body[1]["after"]["seat_id"] == seats[1]
    assert found.body[0]["after"]["refunded_minor"] == shares[seats[1]]
    ended = await api.get(
        f"/api/admin/audit/?booking_id={whole['id']}&action=booking.cancelled",
        token=api.staff_token,
    )
    assert [e["after"]["cancel_reason"] for e in ended.body] == ["refunded"]


async def test_admins_only_and_bad_input(api: ApiClient, users: Users) -> None:
    screening = await api.new_screening()
    for role in (Role.CUSTOMER, Role.BOX_OFFICE):
        token = await users.one(role=role)
        for query in ("", "?format=csv"):
            reply = await api.get(report_path(screening.id, query), token=token)
            assert reply.status == 403, (role, reply)
    assert (await api.get(report_path(screening.id))).status == 401
    missing = await api.get(report_path(999_999_999), token=api.staff_token)
    assert (missing.status, missing.body["error"]["code"]) == (404, "screening_not_found")
    for bad in ("?format=xml", "?format=", "?format=CSV"):
        reply = await api.get(report_path(screening.id, bad), token=api.staff_token)
        assert (reply.status, reply.body["error"]["code"]) == (400, "validation_error"), bad
    empty = await report(api, screening.id)
    assert empty["places"]["available"] == empty["places"]["total"] == 10
    assert empty["revenue"]["net"] == "0.00" and empty["refunds"]["amount"] == "0.00"


async def test_a_failed_refund_is_not_counted_as_refunded(
    api: ApiClient, users: Users, pool: Pool
) -> None:
    """Partial refunds of three paid bookings, one pending at the provider, one confirmed by
    its webhook, one failed for good, and a whole refund that failed: only the first two
    count as refunded (the pending one shown apart); the failed money is still kept, and
    listed under failed with its amount."""
    screening = await api.new_screening()
    sid, seats = screening.id, screening.seat_ids
    owners = await users.create(4)
    booked = [await book(api, owners[i], sid, seat_ids=seats[2 * i : 2 * i + 2]) for i in range(4)]
    tag = secrets.token_hex(4)
    for i, b in enumerate(booked):
        await pool.execute(CONFIRM, b["id"])
        await pool.execute(  # paid at a provider: refunds go there (status pending)
            "UPDATE bookings SET payment_intent_id = $2 WHERE id = $1", b["id"], f"pi_{tag}_{i}"
        )
    store = PgRefundStore(pool)
    ids, shares = [], [shares_of(b) for b in booked]
    for i, b in enumerate(booked):
        seat = None if i == 3 else (seats[2 * i],)
        why = RefundRequest(b["id"], "test", RefundSource.STAFF, None, seat)
        recorded = await store.record(why, shares[i], whole=seat is None)
        assert recorded.refused is None and recorded.refund_id is not None
        ids.append(recorded.refund_id)
    pending, confirmed, failed, failed_whole = ids
    await store.submitted(pending, f"re_{tag}_0")
    done = ProviderRefund(f"re_{tag}_1", confirmed, RefundStatus.REFUNDED)
    event = RefundEvent(f"evt_{tag}", "refund.updated", f"pi_{tag}_1", (done,))
    assert await store.apply_event(event) == [booked[1]["id"]]
    for refund_id in (failed, failed_whole):
        await store.submit_failed(refund_id, "card expired", None)

    body = await report(api, sid)
    one = [shares[i][seats[2 * i]] for i in range(3)]  # the partial refunds' amounts
    revenue, refunds = body["revenue"], body["refunds"]
    assert revenue["net_minor"] == sum(b["total_minor"] for b in booked[:3])
    assert revenue["refunded_minor"] == one[0] + one[1]
    assert revenue["refund_pending_minor"] == one[0]
    assert revenue["kept_minor"] == revenue["net_minor"] - one[0] - one[1]
    assert (refunds["count"], refunds["pending"], refunds["failed"]) == (2, 1, 2)
    assert refunds["amount_minor"] == one[0] + one[1]
    assert refunds["pending_amount_minor"] == one[0]
    assert refunds["failed_amount_minor"] == one[2] + booked[3]["total_minor"]
    assert refunds["by_source"] == {"staff": {"count": 2, **money(one[0] + one[1])}}
    # PostgreSQL: the bookings' refunded_minor still holds the failed ones (never refunded
    # twice); the refunds table's non-failed rows are what the report counts.
    column = await pool.fetchval(
        "SELECT sum(refunded_minor) FROM bookings WHERE screening_id = $1 AND status = 'CONFIRMED'",
        sid,
    )
    assert column == one[0] + one[1] + one[2]
    made = await pool.fetchval(
        "SELECT sum(r.amount_minor) FROM refunds r JOIN bookings b ON b.id = r.booking_id"
        " WHERE b.screening_id = $1 AND r.status <> 'failed'",
        sid,
    )
    assert made == refunds["amount_minor"]

    reply = await api.get(report_path(sid, "?format=csv"), token=api.staff_token)
    by_key = {(r[0], r[1], r[2]): r for r in csv.reader(io.StringIO(reply.body))}
    assert by_key[("totals", "refunded", "")][5] == str(one[0] + one[1])
    assert by_key[("refunds", "failed", "")][3] == "2"
    assert by_key[("refunds", "failed", "")][5] == str(one[2] + booked[3]["total_minor"])


def money(minor: int) -> dict[str, Any]:
    return {"amount": f"{minor // 100}.{minor % 100:02d}", "amount_minor": minor}
