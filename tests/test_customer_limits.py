"""max_tickets_per_customer: ten parallel requests by one customer never exceed it (real
PostgreSQL and Redis, one connection per request), seated and general admission."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.client import ApiClient, wait_for
from tests.conftest import AppFactory, Users
from tests.payment_fixtures import CARD_OK, booking_of, deliver, paid_event
from tests.test_webhooks import _end_as_expired


async def seated_screening(api: ApiClient, limit: int) -> tuple[int, list[int]]:
    movie = await api.post(
        "/api/admin/movies/", {"title": "Premiere", "duration_minutes": 120}, token=api.staff_token
    )
    hall = await api.post(
        "/api/admin/halls/",
        {"name": "Big", "layout": {"rows": [{"label": "A", "seats": 20}]}},
        token=api.staff_token,
    )
    screening = await api.post(
        "/api/admin/screenings/",
        {
            "movie_id": movie.body["id"],
            "hall_id": hall.body["id"],
            "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "prices": {"standard": "10.00"},
            "currency": "usd",
            "max_tickets_per_customer": limit,
        },
        token=api.staff_token,
    )
    assert screening.status == 201, screening
    assert screening.body["max_tickets_per_customer"] == limit
    seats = await api.get(f"/api/screenings/{screening.body['id']}/seats/")
    return screening.body["id"], [s["id"] for s in seats.body["seats"]]


async def parallel(calls: list[Any]) -> list[Any]:
    start = asyncio.Event()

    async def one(call: Any) -> Any:
        await start.wait()
        return await call()

    tasks = [asyncio.create_task(one(c)) for c in calls]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.gather(*tasks)


async def live_tickets(database_url: str, screening_id: int) -> Counter[int]:
    """Live tickets per customer of the screening, straight from PostgreSQL."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT b.user_id FROM reservations r JOIN bookings b ON b.id = r.booking_id"
            " WHERE r.screening_id = $1 AND r.status <> 'CANCELLED'",
            screening_id,
        )
    finally:
        await conn.close()
    return Counter(r["user_id"] for r in rows)


def assert_limited(replies: list[Any], wins: int) -> None:
    assert Counter(r.status for r in replies) == {201: wins, 409: len(replies) - wins}
    for reply in replies:
        if reply.status == 409:
            assert reply.body["error"]["code"] == "customer_limit_reached", reply
            assert reply.body["error"]["limit"] >= 1


async def test_ten_parallel_seated_requests_by_one_customer(
    make_api: AppFactory, users: Users, database_url: str
):
    apis = [await make_api(), await make_api()]  # two app instances: PostgreSQL decides
    screening_id, seats = await seated_screening(apis[0], 4)
    token = await users.one()
    calls = [(lambda i=i: apis[i % 2].book(token, screening_id, [seats[i]])) for i in range(10)]
    assert_limited(await parallel(calls), 4)
    assert list((await live_tickets(database_url, screening_id)).values()) == [4]
    # another customer is not limited by this one
    other = await users.one()
    assert (await apis[0].book(other, screening_id, seats[10:14])).status == 201
    assert (await apis[0].book(other, screening_id, seats[14:15])).status == 409


async def test_ten_parallel_ga_requests_by_one_customer(
    make_api: AppFactory, users: Users, database_url: str
):
    apis = [await make_api(), await make_api(hold_filter="off")]
    screening_id = await apis[0].new_ga_screening(100, max_tickets_per_customer=4)
    token = await users.one()
    calls = [(lambda i=i: apis[i % 2].book_places(token, screening_id, 2)) for i in range(10)]
    assert_limited(await parallel(calls), 2)
    assert list((await live_tickets(database_url, screening_id)).values()) == [4]
    assert (await apis[0].place_counts(screening_id))["locked"] == 4


async def test_cancel_gives_the_count_back(api: ApiClient, users: Users, database_url: str):
    screening_id = await api.new_ga_screening(10, max_tickets_per_customer=1)
    token = await users.one()
    first = await api.book_places(token, screening_id, 1)
    assert first.status == 201
    second = await api.book_places(token, screening_id, 1)
    assert second.status == 409
    assert second.body["error"]["code"] == "customer_limit_reached"
    assert second.body["error"]["available"] == 0
    assert (await api.delete(f"/api/bookings/{first.body['id']}/", token=token)).status == 200
    assert (await api.book_places(token, screening_id, 1)).status == 201


async def test_a_request_larger_than_the_limit_is_refused(api: ApiClient, users: Users):
    screening_id = await api.new_ga_screening(10, max_tickets_per_customer=3)
    reply = await api.book_places(await users.one(), screening_id, 4)
    assert reply.status == 409
    assert reply.body["error"]["code"] == "customer_limit_reached"
    assert reply.body["error"]["available"] == 3


@pytest.mark.parametrize("key", ["retry-1"])
async def test_an_idempotent_retry_at_the_limit_replays(api: ApiClient, users: Users, key: str):
    screening_id = await api.new_ga_screening(10, max_tickets_per_customer=1)
    token = await users.one()
    first = await api.book_places(token, screening_id, 1, key=key)
    again = await api.book_places(token, screening_id, 1, key=key)
    assert first.status == again.status == 201
    assert again.body["id"] == first.body["id"]


async def test_a_late_payment_respects_the_customer_limit(
    make_pay_api: Any, quiet_api: Any, stripe_fake: Any, users: Users, database_url: str
) -> None:
    """A customer's hold lapses, they book another seat (now within the limit of 1), then
    the first payment lands: taking the first seat back would give them 2 tickets, so the
    late payment is refunded and they keep one ticket (the count read from PostgreSQL)."""
    short = (await make_pay_api(hold_ttl_seconds=1)).client
    screening = await short.new_screening(max_tickets_per_customer=1)
    token = await users.one()
    late = await short.book(token, screening.id, screening.seat_ids[:1])
    assert late.status == 201, late
    intent = late.body["payment"]["payment_intent_id"]

    async def lapsed() -> bool:
        return (await short.seat_statuses(screening.id))[screening.seat_ids[0]] == "AVAILABLE"

    await wait_for(lapsed, within=15, what="the 1 s hold to lapse")
    await _end_as_expired(database_url, late.body["id"])
    keeper = (await make_pay_api()).client  # a 15-minute hold: it must not lapse meanwhile
    second = await keeper.book(token, screening.id, screening.seat_ids[1:2])
    assert second.status == 201, second

    assert await stripe_fake.pay(intent, CARD_OK) == "succeeded"
    reply = await deliver(keeper, *paid_event(late.body))
    assert (reply.status, reply.body["outcome"]) == (200, "refund_needed"), reply
    after = await booking_of(keeper, token, late.body["id"])
    assert after["status"] == "CANCELLED"
    assert after["payment"]["status"] == "refunded"
    refunds = await stripe_fake.refunds(intent)
    assert [r.status for r in refunds] == ["succeeded"]
    assert (await booking_of(keeper, token, second.body["id"]))["status"] == "PENDING"
    assert list((await live_tickets(database_url, screening.id)).values()) == [1]
    assert (await keeper.seat_statuses(screening.id))[screening.seat_ids[0]] == "AVAILABLE"
