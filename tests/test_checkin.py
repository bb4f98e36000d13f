"""Check-in at the door: a code per ticket, shown to its owner once the booking is CONFIRMED;
POST /api/admin/checkin/ admits a ticket exactly once, even against ten scanners at once, and
works while Redis is down. Every race ends with the invariant read straight from PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import jwt
import pytest

from cinema.auth.model import Role
from tests.client import ApiClient, Reply, Screening
from tests.conftest import JWT_SECRET
from tests.faultkit import RedisServer
from tests.payment_fixtures import deliver, paid_event, wait_status

CHECKIN = "/api/admin/checkin/"
# What settlement does when a payment succeeds (cinema/store/settlement.py `_CONFIRM`).
CONFIRM = """
    WITH b AS (
        UPDATE bookings SET status = 'CONFIRMED', payment_status = 'succeeded',
            cancel_reason = NULL, updated_at = now()
        WHERE id = $1 RETURNING id
    )
    UPDATE reservations SET status = 'CONFIRMED' WHERE booking_id = (SELECT id FROM b)
"""

REFUNDED = """
    WITH b AS (
        UPDATE bookings SET status = 'CANCELLED', cancel_reason = 'refunded',
            payment_status = '{}' WHERE id = $1 RETURNING id
    )
    UPDATE reservations SET status = 'CANCELLED' WHERE booking_id = (SELECT id FROM b)
"""


def user_id_of(token: str) -> int:
    return int(jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["sub"])


async def confirmed_booking(
    api: ApiClient, pool: Any, token: str, seats: int = 1, screening: Any = None
) -> tuple[dict[str, Any], Any]:
    screening = screening or await api.new_screening()
    booked = await api.book(token, screening.id, screening.seat_ids[:seats])
    assert booked.status == 201, booked
    await pool.execute(CONFIRM, booked.body["id"])
    reply = await api.get(f"/api/bookings/{booked.body['id']}/", token=token)
    assert reply.status == 200, reply
    return reply.body, screening


async def check_in(api: ApiClient, token: str, code: str, **extra: Any) -> Reply:
    return await api.post(CHECKIN, {"code": code, **extra}, token=token)


@pytest.fixture
async def clerk(users: Any) -> str:
    return str(await users.one(role=Role.BOX_OFFICE))


async def test_the_owner_sees_codes_only_once_confirmed(
    api: ApiClient, users: Any, pool: Any
) -> None:
    owner = await users.one()
    screening = await api.new_screening()
    booked = await api.book(owner, screening.id, screening.seat_ids[:2])
    pending = await api.get(f"/api/bookings/{booked.body['id']}/", token=owner)
    assert all("code" not in t for t in pending.body["tickets"])
    await pool.execute(CONFIRM, booked.body["id"])
    booking = (await api.get(f"/api/bookings/{booked.body['id']}/", token=owner)).body
    tickets = booking["tickets"]
    assert [t["seat_id"] for t in tickets] == screening.seat_ids[:2]
    assert {"seat_id", "ticket_type", "code", "checked_in_at", "price", "category"} <= set(
        tickets[0]
    )
    assert tickets[0]["ticket_type"] == "adult"
    codes = [t["code"] for t in tickets]
    assert len(set(codes)) == 2 and all(len(c) >= 27 for c in codes)
    assert all(t["qr_svg"].startswith("data:image/svg+xml") for t in tickets)
    assert all(t["checked_in_at"] is None for t in tickets)
    other = await api.get(f"/api/bookings/{booked.body['id']}/", token=await users.one())
    assert other.status == 404


async def test_first_scan_admits_the_second_says_when_and_by_whom(
    api: ApiClient, users: Any, pool: Any, clerk: str
) -> None:
    owner = await users.one()
    booking, screening = await confirmed_booking(api, pool, owner)
    code = booking["tickets"][0]["code"]
    first = await check_in(api, clerk, code)
    assert first.status == 200, first
    assert set(first.body) == {
        "booking_id", "screening_id", "seat_id", "ticket_type", "checked_in_at",
    }  # fmt: skip
    assert first.body["booking_id"] == booking["id"]
    assert first.body["screening_id"] == screening.id
    assert first.body["seat_id"] == screening.seat_ids[0]
    assert first.body["ticket_type"] == "adult"
    again = await check_in(api, api.staff_token, code)
    assert again.status == 409
    error = again.body["error"]
    assert error["code"] == "already_checked_in"
    assert error["checked_in_at"] == first.body["checked_in_at"]
    assert error["checked_in_by"]["id"] == user_id_of(clerk)
    assert error["checked_in_by"]["email"].endswith("@example.com")
    owner_view = await api.get(f"/api/bookings/{booking['id']}/", token=owner)
    assert owner_view.body["tickets"][0]["checked_in_at"] == first.body["checked_in_at"]


async def test_unknown_and_forged_codes_are_404(
    api: ApiClient, users: Any, pool: Any, clerk: str
) -> None:
    booking, _ = await confirmed_booking(api, pool, await users.one())
    code = booking["tickets"][0]["code"]
    head, _, tag = code.partition("-")
    flipped = tag[:-1] + ("A" if tag[-1] != "A" else "B")
    forged = [
        f"{head}-{flipped}",  # a real ticket, a wrong tag
        f"{int(head) + 1}-{tag}",  # another ticket's id with this tag
        f"999999999-{secrets.token_urlsafe(20)[:27]}",  # no such ticket
        "hello",
        code + "x",
        "-" + tag,
        "٣-" + tag,  # non-ASCII digits
    ]
    for bad in forged:
        reply = await check_in(api, clerk, bad)
        assert reply.status == 404, (bad, reply)
        assert reply.body["error"]["code"] == "not_found"
    assert (await check_in(api, clerk, code)).status == 200  # forgeries changed nothing


async def test_a_ticket_for_another_screening_is_not_valid(
    api: ApiClient, users: Any, pool: Any, clerk: str
) -> None:
    booking, screening = await confirmed_booking(api, pool, await users.one())
    other = await api.new_screening()
    code = booking["tickets"][0]["code"]
    reply = await check_in(api, clerk, code, screening_id=other.id)
    assert reply.status == 409
    assert reply.body["error"]["code"] == "ticket_not_valid"
    assert reply.body["error"]["reason"] == "other_screening"
    assert reply.body["error"]["screening_id"] == screening.id
    assert (await check_in(api, clerk, code, screening_id=screening.id)).status == 200


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            "UPDATE bookings SET status = 'CANCELLED', cancel_reason = 'test' WHERE id = $1",
            "booking_cancelled",
        ),
        # What a full refund leaves (db/013 cinema_refund_tickets): tickets ended, booking
        # CANCELLED; a partial refund ends the refunded tickets only (tests/test_refunds.py).
        (REFUNDED.format("refunded"), "booking_refunded"),
        (REFUNDED.format("refund_pending"), "booking_refunded"),
    ],
)
async def test_cancelled_or_refunded_bookings_are_not_valid(
    api: ApiClient, users: Any, pool: Any, clerk: str, change: str, reason: str
) -> None:
    booking, _ = await confirmed_booking(api, pool, await users.one())
    await pool.execute(change, booking["id"])
    reply = await check_in(api, clerk, booking["tickets"][0]["code"])
    assert reply.status == 409, reply
    assert reply.body["error"]["code"] == "ticket_not_valid"
    assert reply.body["error"]["reason"] == reason


async def test_a_pending_booking_is_not_valid(
    api: ApiClient, users: Any, pool: Any, clerk: str
) -> None:
    booking, _ = await confirmed_booking(api, pool, await users.one())
    code = booking["tickets"][0]["code"]
    await pool.execute("UPDATE bookings SET status = 'PENDING' WHERE id = $1", booking["id"])
    await pool.execute(
        "UPDATE reservations SET status = 'PENDING' WHERE booking_id = $1", booking["id"]
    )
    reply = await check_in(api, clerk, code)
    assert reply.status == 409
    assert reply.body["error"]["reason"] == "booking_not_confirmed"


async def test_customers_cannot_check_in_and_codes_never_come_from_the_query(
    api: ApiClient, users: Any, pool: Any, clerk: str
) -> None:
    owner = await users.one()
    booking, _ = await confirmed_booking(api, pool, owner)
    code = booking["tickets"][0]["code"]
    assert (await check_in(api, owner, code)).status == 403
    from_query = await api.post(f"{CHECKIN}?code={code}", {}, token=clerk)
    assert from_query.status == 400
    assert from_query.body["error"]["code"] == "validation_error"
    no_body = await api.request("POST", f"{CHECKIN}?code={code}", token=clerk)
    assert no_body.status in (400, 415)
    for bad in ({"code": ""}, {"code": 5}, {"code": "x" * 500}, {"code": code, "extra": 1}):
        assert (await api.post(CHECKIN, bad, token=clerk)).status == 400, bad
    # None of the above admitted the ticket.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM reservations WHERE booking_id = $1 AND checked_in_at IS NOT NULL",
            booking["id"],
        )
        == 0
    )


async def test_ten_scanners_at_two_doors_admit_a_ticket_once_20_times(
    api: ApiClient, users: Any, pool: Any
) -> None:
    doors = [await users.one(role=Role.BOX_OFFICE), await users.one(role=Role.ADMIN)]
    screening = await api.new_screening(layout={"rows": [{"label": "A", "seats": 20}]})
    booking, _ = await confirmed_booking(api, pool, await users.one(), 10, screening)
    rest = Screening(screening.id, screening.hall_id, screening.seat_ids[10:])
    booking2, _ = await confirmed_booking(api, pool, await users.one(), 10, rest)
    codes = [t["code"] for t in booking["tickets"] + booking2["tickets"]]
    assert len(codes) == 20
    winners: list[dict[str, Any]] = []
    for code in codes:
        replies = await asyncio.gather(
            *(check_in(api, doors[n % 2], code, screening_id=screening.id) for n in range(10))
        )
        statuses = Counter(r.status for r in replies)
        assert statuses == {200: 1, 409: 9}, replies
        assert all(
            r.body["error"]["code"] == "already_checked_in" for r in replies if r.status == 409
        )
        winners.append(next(r.body for r in replies if r.status == 200))
    rows = await pool.fetch(
        "SELECT seat_id, checked_in_at, checked_in_by FROM reservations"
        " WHERE screening_id = $1 ORDER BY seat_id",
        screening.id,
    )
    assert len(rows) == 20 and all(r["checked_in_at"] is not None for r in rows)
    by_seat = {w["seat_id"]: w["checked_in_at"] for w in winners}
    assert {r["seat_id"]: r["checked_in_at"].isoformat() for r in rows} == by_seat


async def test_check_in_works_while_redis_is_down(
    make_api: Any, users: Any, pool: Any, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        api = await make_api(redis_url=redis.url)
        clerk = await users.one(role=Role.BOX_OFFICE)
        booking, _ = await confirmed_booking(api, pool, await users.one(), 2)
        redis.kill()
        codes = [t["code"] for t in booking["tickets"]]
        first = await check_in(api, clerk, codes[0])
        assert first.status == 200, first
        assert (await check_in(api, clerk, codes[0])).status == 409
        assert (await check_in(api, clerk, codes[1])).status == 200
        found = await api.get(f"/api/admin/bookings/{booking['id']}/", token=clerk)
        assert found.status == 200
        assert all(t["checked_in_at"] for t in found.body["tickets"])
    finally:
        redis.close()


async def test_a_booking_paid_through_the_webhook_gets_codes(quiet_api: Any, users: Any) -> None:
    api = quiet_api.client
    owner = await api.new_user()
    screening = await api.new_screening()
    booked = await api.book(owner, screening.id, screening.seat_ids[:1])
    assert booked.status == 201, booked
    done = await deliver(api, *paid_event(booked.body))
    assert done.status == 200, done
    booking = await wait_status(api, owner, booked.body["id"], "CONFIRMED")
    clerk = await users.one(role=Role.BOX_OFFICE)
    reply = await check_in(api, clerk, booking["tickets"][0]["code"])
    assert reply.status == 200, reply


async def test_codes_are_never_logged_in_full(
    api: ApiClient, users: Any, pool: Any, clerk: str, caplog: pytest.LogCaptureFixture
) -> None:
    booking, _ = await confirmed_booking(api, pool, await users.one())
    code = booking["tickets"][0]["code"]
    forged = code[:-1] + ("A" if code[-1] != "A" else "B")
    with caplog.at_level("DEBUG"):
        for sent in (code, code, forged):
            await check_in(api, clerk, sent)
        await api.post(f"{CHECKIN}?code={code}", {}, token=clerk)
    assert "check-in refused" in caplog.text  # the refusal was logged, redacted
    assert code not in caplog.text and forged not in caplog.text
    assert code.partition("-")[2] not in caplog.text
