"""The booking endpoints: happy paths, validation, ownership, cancel, idempotency."""

import asyncpg
import pytest

from cinema.holds import seat_key
from tests.client import wait_for


async def test_book_then_see_it(api, users):
    screening = await api.new_screening(prices={"standard": "12.50"})
    token = await users.one()
    seats = screening.seat_ids[:2]
    reply = await api.book(token, screening.id, seats)
    assert reply.status == 201, reply
    booking = reply.body
    assert booking["status"] == "PENDING"
    assert booking["screening_id"] == screening.id
    assert booking["seat_ids"] == sorted(seats)
    assert booking["amount"] == "25.00"
    assert booking["amount_minor"] == 2500
    assert booking["currency"] == "usd"
    assert len(booking["reference"]) == 8
    assert booking["expires_at"] > booking["created_at"]

    again = await api.get(f"/api/bookings/{booking['id']}/", token=token)
    assert again.status == 200
    assert again.body == booking
    statuses = await api.seat_statuses(screening.id)
    assert [statuses[s] for s in seats] == ["LOCKED", "LOCKED"]
    mine = await api.get("/api/my-bookings/", token=token)
    assert [b["id"] for b in mine.body] == [booking["id"]]


async def test_my_bookings_newest_first(api, users):
    screening = await api.new_screening()
    token = await users.one()
    ids = []
    for seat in screening.seat_ids[:3]:
        ids.append((await api.book(token, screening.id, [seat])).body["id"])
    mine = await api.get("/api/my-bookings/", token=token)
    assert [b["id"] for b in mine.body] == ids[::-1]


async def test_other_users_bookings_are_404(api, users):
    screening = await api.new_screening()
    owner, other = await users.create(2)
    booking = (await api.book(owner, screening.id, screening.seat_ids[:1])).body
    for method in ("GET", "DELETE"):
        reply = await api.request(method, f"/api/bookings/{booking['id']}/", token=other)
        assert reply.status == 404
        assert reply.body["error"]["code"] == "booking_not_found"
    assert (await api.get("/api/my-bookings/", token=other)).body == []
    still = await api.get(f"/api/bookings/{booking['id']}/", token=owner)
    assert still.body["status"] == "PENDING"


async def test_cancel_frees_seats_at_once(api, users, redis_prefix):
    import redis.asyncio as aioredis

    screening = await api.new_screening()
    first, second = await users.create(2)
    seats = screening.seat_ids[:2]
    booking = (await api.book(first, screening.id, seats)).body
    cancelled = await api.delete(f"/api/bookings/{booking['id']}/", token=first)
    assert cancelled.status == 200
    assert cancelled.body["status"] == "CANCELLED"
    assert cancelled.body["cancel_reason"] == "cancelled_by_user"
    statuses = await api.seat_statuses(screening.id)
    assert [statuses[s] for s in seats] == ["AVAILABLE", "AVAILABLE"]
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        assert await client.exists(*(seat_key(redis_prefix, screening.id, s) for s in seats)) == 0
    finally:
        await client.aclose()
    retaken = await api.book(second, screening.id, seats)
    assert retaken.status == 201, retaken
    # cancelling twice is harmless and still says CANCELLED
    twice = await api.delete(f"/api/bookings/{booking['id']}/", token=first)
    assert twice.status == 200
    assert twice.body["status"] == "CANCELLED"


async def test_confirmed_booking_cannot_be_cancelled_inside_the_window(api, users, database_url):
    """Within CUSTOMER_CANCEL_HOURS (24) of the start a paid booking stays (issue 13);
    earlier it is refunded: tests/test_refunds.py."""
    screening = await api.new_screening()
    token = await users.one()
    booking = (await api.book(token, screening.id, screening.seat_ids[:1])).body
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE bookings SET status = 'CONFIRMED' WHERE id = $1", booking["id"])
        await conn.execute(
            "UPDATE reservations SET status = 'CONFIRMED' WHERE booking_id = $1", booking["id"]
        )
    finally:
        await conn.close()
    reply = await api.delete(f"/api/bookings/{booking['id']}/", token=token)
    assert reply.status == 409
    assert reply.body["error"]["code"] == "cancel_window_closed"
    assert reply.body["error"]["reason"] == "cancel_window_closed"
    assert (await api.seat_statuses(screening.id))[screening.seat_ids[0]] == "SOLD"


async def test_taken_seats_are_named_in_the_409(api, users):
    screening = await api.new_screening()
    first, second = await users.create(2)
    a, b, c = screening.seat_ids[:3]
    assert (await api.book(first, screening.id, [a, b])).status == 201
    reply = await api.book(second, screening.id, [b, c])
    assert reply.status == 409
    assert reply.body["error"]["code"] == "seats_unavailable"
    assert reply.body["error"]["seat_ids"] == [b]
    # the loser holds nothing: c is still free for anyone
    assert (await api.seat_statuses(screening.id))[c] == "AVAILABLE"
    assert (await api.book(second, screening.id, [c])).status == 201


async def test_same_idempotency_key_returns_the_original(api, users):
    screening = await api.new_screening()
    token = await users.one()
    seats = screening.seat_ids[:2]
    first = await api.book(token, screening.id, seats, key="order-42")
    again = await api.book(token, screening.id, list(reversed(seats)), key="order-42")
    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    # another user with the same key is another booking (and here: a conflict)
    other = await users.one()
    assert (await api.book(other, screening.id, seats, key="order-42")).status == 409
    # the same key for a different request is refused
    reused = await api.book(token, screening.id, screening.seat_ids[2:3], key="order-42")
    assert reused.status == 422
    assert reused.body["error"]["code"] == "idempotency_key_reused"
    mine = await api.get("/api/my-bookings/", token=token)
    assert len(mine.body) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"seat_ids": []}, 400, "validation_error"),
        ({"seat_ids": list(range(1, 12))}, 400, "validation_error"),
        ({"seat_ids": "dup"}, 400, "invalid_seat_selection"),
        ({"seat_ids": "foreign"}, 400, "seats_not_in_hall"),
        ({"seat_ids": [0]}, 400, "validation_error"),
        ({"seat_ids": [2**70]}, 400, "validation_error"),
        ({"screening_id": 999999999}, 404, "screening_not_found"),
        ({"screening_id": "abc"}, 400, "validation_error"),
        ({"extra": True}, 400, "validation_error"),
    ],
)
async def test_booking_validation(api, users, body, status, code):
    screening = await api.new_screening()
    token = await users.one()
    request = {"screening_id": screening.id, "seat_ids": screening.seat_ids[:1]}
    request.update(body)
    if request["seat_ids"] == "dup":
        request["seat_ids"] = [screening.seat_ids[0]] * 2
    if request["seat_ids"] == "foreign":
        request["seat_ids"] = [screening.seat_ids[0], 999999999]
    reply = await api.post("/api/bookings/", request, token=token)
    assert reply.status == status, reply
    assert reply.body["error"]["code"] == code
    assert set((await api.seat_statuses(screening.id)).values()) == {"AVAILABLE"}


async def test_started_screening_is_not_bookable(api, make_api, users, database_url):
    screening = await api.new_screening()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE screenings SET starts_at = now() - interval '1 minute' WHERE id = $1",
            screening.id,
        )
    finally:
        await conn.close()
    fresh = await make_api()  # a new process view: screenings are cached once loaded
    reply = await fresh.book(await users.one(), screening.id, screening.seat_ids[:1])
    assert reply.status == 400
    assert reply.body["error"]["code"] == "screening_started"


async def test_bad_idempotency_key_is_400(api, users):
    screening = await api.new_screening()
    token = await users.one()
    reply = await api.book(token, screening.id, screening.seat_ids[:1], key="x" * 300)
    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_idempotency_key"


async def test_lapsed_hold_is_available_and_retaken_without_any_cleaner(make_api, users):
    api = await make_api(hold_ttl_seconds=1, hold_grace_seconds=60)
    screening = await api.new_screening()
    first, second = await users.create(2)
    seat = screening.seat_ids[0]
    held = await api.book(first, screening.id, [seat])
    assert held.status == 201
    assert (await api.seat_statuses(screening.id))[seat] == "LOCKED"

    async def available():
        return (await api.seat_statuses(screening.id))[seat] == "AVAILABLE"

    await wait_for(available)
    # The Redis key lives on (grace 60 s) but its deadline has passed: it must not block.
    retaken = await api.book(second, screening.id, [seat])
    assert retaken.status == 201, retaken
    old = await api.get(f"/api/bookings/{held.body['id']}/", token=first)
    assert old.body["status"] == "CANCELLED"
    assert old.body["cancel_reason"] == "expired"
