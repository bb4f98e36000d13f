"""General admission (a capacity, no seat map), against real PostgreSQL and Redis: the form
of screenings and bookings, places given back, and the race for the last places."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from cinema.app import init_app
from cinema.holds import sold_out_key
from tests.client import ApiClient, wait_for
from tests.conftest import REDIS_URL, AppFactory, Users, make_settings
from tests.test_phantom_locks import DatabaseCounters, own_server


async def place_invariant(database_url: str, screening_id: int) -> int:
    """Live places of the screening, straight from PostgreSQL; fails if one is live twice or
    a live reservation belongs to an ended booking."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT r.seat_id, b.status AS booking_status FROM reservations r"
            " JOIN bookings b ON b.id = r.booking_id"
            " WHERE r.screening_id = $1 AND r.status <> 'CANCELLED'",
            screening_id,
        )
    finally:
        await conn.close()
    per_place = Counter(r["seat_id"] for r in rows)
    assert all(n == 1 for n in per_place.values()), per_place
    assert all(r["booking_status"] != "CANCELLED" for r in rows)
    return len(rows)


async def race_places(
    api: ApiClient, tokens: list[str], screening_id: int, quantity: int = 1
) -> list[Any]:
    start = asyncio.Event()

    async def one(token: str) -> Any:
        await start.wait()
        return await api.book_places(token, screening_id, quantity)

    tasks = [asyncio.create_task(one(t)) for t in tokens]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.gather(*tasks)


def statuses(replies: list[Any]) -> Counter[int]:
    return Counter(r.status for r in replies)


async def test_a_ga_screening_echoes_capacity_and_counts_places(
    api: ApiClient, users: Users, database_url: str
):
    screening_id = await api.new_ga_screening(5, max_tickets_per_customer=4)
    shown = await api.get(f"/api/screenings/{screening_id}/")
    assert shown.body["capacity"] == 5
    assert shown.body["hall_id"] is None
    assert shown.body["max_tickets_per_customer"] == 4
    assert shown.body["prices"] == {"general": "20.00"}
    assert await api.place_counts(screening_id) == {"available": 5, "locked": 0, "sold": 0}
    seated = await api.new_screening()
    plain = await api.get(f"/api/screenings/{seated.id}/")
    assert plain.body["capacity"] is None and plain.body["hall_id"] == seated.hall_id
    # the places' hall is never a hall the API shows
    halls = await api.get("/api/admin/halls/", token=api.staff_token)
    assert "general admission" not in {h["name"] for h in halls.body}

    token = await users.one()
    booked = await api.book_places(token, screening_id, 3)
    assert booked.status == 201, booked
    assert booked.body["seat_ids"] == [] and booked.body["quantity"] == 3
    assert booked.body["amount"] == "60.00"
    assert await api.place_counts(screening_id) == {"available": 2, "locked": 3, "sold": 0}
    tickets = await api.post(
        "/api/bookings/",
        {"screening_id": screening_id, "tickets": [{"ticket_type": "adult", "quantity": 2}]},
        token=await users.one(),
    )
    assert tickets.status == 201, tickets
    over = await api.book_places(await users.one(), screening_id, 1)
    assert over.status == 409
    assert over.body["error"]["code"] == "sold_out"
    assert over.body["error"]["available"] == 0
    assert await place_invariant(database_url, screening_id) == 5


async def test_more_than_left_is_sold_out_but_fewer_still_fit(api: ApiClient, users: Users):
    screening_id = await api.new_ga_screening(5)
    assert (await api.book_places(await users.one(), screening_id, 3)).status == 201
    four = await api.book_places(await users.one(), screening_id, 4)
    assert four.status == 409 and four.body["error"]["available"] == 2
    # the filter now knows "2 left": a request for 2 still reaches PostgreSQL and wins
    assert (await api.book_places(await users.one(), screening_id, 2)).status == 201


BAD_SCREENINGS = [
    ({"hall_id": 1, "capacity": 10}, "exactly one"),
    ({}, "exactly one"),
    ({"capacity": 0}, "capacity"),
    ({"capacity": 10_000_000}, "capacity"),
    ({"capacity": 10, "max_tickets_per_customer": 0}, "max_tickets_per_customer"),
]


@pytest.mark.parametrize(("extra", "mentions"), BAD_SCREENINGS)
async def test_bad_ga_screenings_are_400(api: ApiClient, extra: dict[str, Any], mentions: str):
    movie = await api.post(
        "/api/admin/movies/",
        {"title": "x", "duration_minutes": 90},
        token=api.staff_token,
    )
    body = {
        "movie_id": movie.body["id"],
        "starts_at": "2100-01-01T20:00:00Z",
        "prices": {"general": "20.00"},
        "currency": "usd",
        **extra,
    }
    reply = await api.post("/api/admin/screenings/", body, token=api.staff_token)
    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "validation_error"
    assert mentions in reply.body["error"]["message"]


async def test_ga_prices_must_be_the_general_category(api: ApiClient):
    movie = await api.post(
        "/api/admin/movies/", {"title": "x", "duration_minutes": 90}, token=api.staff_token
    )
    reply = await api.post(
        "/api/admin/screenings/",
        {
            "movie_id": movie.body["id"],
            "capacity": 10,
            "starts_at": "2100-01-01T20:00:00Z",
            "prices": {"standard": "20.00"},
            "currency": "usd",
        },
        token=api.staff_token,
    )
    assert reply.status == 400 and reply.body["error"]["code"] == "invalid_screening"


async def test_bad_ga_bookings_are_400_and_write_nothing(
    api: ApiClient, users: Users, database_url: str
):
    ga = await api.new_ga_screening(10)
    seated = await api.new_screening()
    token = await users.one()
    bad = [
        ({"screening_id": ga, "seat_ids": [seated.seat_ids[0]]}, "validation_error"),
        ({"screening_id": seated.id, "quantity": 1}, "validation_error"),
        ({"screening_id": ga, "quantity": 0}, "validation_error"),
        ({"screening_id": ga, "quantity": 11}, "validation_error"),
        ({"screening_id": ga, "quantity": 1, "seat_ids": [1]}, "validation_error"),
        ({"screening_id": ga}, "validation_error"),
        (
            {"screening_id": ga, "tickets": [{"ticket_type": "alien", "quantity": 1}]},
            "unknown_ticket_type",
        ),
        (
            {"screening_id": ga, "tickets": [{"ticket_type": "adult", "quantity": 6}] * 2},
            "validation_error",
        ),
        ({"screening_id": ga, "tickets": []}, "validation_error"),
    ]
    for body, code in bad:
        reply = await api.post("/api/bookings/", body, token=token)
        assert reply.status == 400, (body, reply)
        assert reply.body["error"]["code"] == code, (body, reply)
        assert "pydantic" not in reply.body["error"]["message"]
    assert await place_invariant(database_url, ga) == 0
    assert await api.place_counts(ga) == {"available": 10, "locked": 0, "sold": 0}


async def test_cancel_gives_places_back_at_once(api: ApiClient, users: Users, database_url: str):
    screening_id = await api.new_ga_screening(2)
    first = await users.one()
    booked = await api.book_places(first, screening_id, 2)
    assert booked.status == 201
    # PostgreSQL says sold out, and the filter learns it
    assert (await api.book_places(await users.one(), screening_id, 1)).status == 409
    cancelled = await api.delete(f"/api/bookings/{booked.body['id']}/", token=first)
    assert cancelled.status == 200
    assert await api.place_counts(screening_id) == {"available": 2, "locked": 0, "sold": 0}
    # the release deleted the sold-out marker: no wait for its window
    assert (await api.book_places(await users.one(), screening_id, 2)).status == 201
    assert await place_invariant(database_url, screening_id) == 2


async def test_expiry_gives_places_back(make_api: AppFactory, users: Users, database_url: str):
    api = await make_api(hold_ttl_seconds=1)
    screening_id = await api.new_ga_screening(3)
    assert (await api.book_places(await users.one(), screening_id, 3)).status == 201
    assert (await api.book_places(await users.one(), screening_id, 3)).status == 409
    buyer = await users.one()

    async def counts_free() -> bool:
        return (await api.place_counts(screening_id))["available"] == 3

    await wait_for(counts_free, within=10, what="the lapsed hold's places to count as free")

    async def booked() -> bool:
        return (await api.book_places(buyer, screening_id, 3)).status == 201

    # the lapsed hold is ended by the next buyer (or the reconciler); the sold-out marker
    # lapses within the claim window
    await wait_for(booked, within=10, interval=0.2, what="the lapsed places to be bookable")
    assert await place_invariant(database_url, screening_id) == 3


async def test_idempotent_retry_of_a_ga_booking_replays(api: ApiClient, users: Users):
    screening_id = await api.new_ga_screening(4)
    token = await users.one()
    first = await api.book_places(token, screening_id, 2, key="ga-1")
    again = await api.book_places(token, screening_id, 2, key="ga-1")
    assert first.status == again.status == 201
    assert again.body["id"] == first.body["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = await api.book_places(token, screening_id, 3, key="ga-1")
    assert other.status == 422


# --- the race for the last places --------------------------------------------------------

LAST = 10
BUYERS = 1000


async def _presold(api: ApiClient, users: Users, capacity: int) -> int:
    """A screening of `capacity` places with all but the last LAST already held."""
    screening_id = await api.new_ga_screening(capacity)
    token = await users.one()
    left = capacity - LAST
    while left > 0:
        batch = min(left, 10)
        assert (await api.book_places(token, screening_id, batch)).status == 201
        left -= batch
    return screening_id


def assert_race(replies: list[Any]) -> None:
    assert statuses(replies) == {201: LAST, 409: BUYERS - LAST}
    for reply in replies:
        if reply.status == 409:
            assert reply.body["error"]["code"] == "sold_out", reply


async def test_1000_buyers_for_the_last_10_places_and_losers_skip_postgres(
    users: Users, database_url: str, redis_prefix: str, rds: aioredis.Redis
):
    """Exactly 10 sold; once Redis knows the screening is sold out, a further burst of
    buyers opens no PostgreSQL transaction (compared with a lone buyer's arm, both measured
    after every backend of the arm has exited)."""
    # A long window: the marker outlives the measured arms, and the periodic sweep stays out.
    settings = make_settings(
        database_url, redis_prefix, claim_provisional_seconds=60, redis_timeout_seconds=5.0
    )
    staff = await users.one(staff=True)
    counters = DatabaseCounters(database_url)
    await counters.track_functions()
    tokens = await users.create(BUYERS)
    async with own_server(settings, staff) as api:
        screening_id = await _presold(api, users, 30)
        replies = await race_places(api, tokens, screening_id)
    assert_race(replies)
    assert await place_invariant(database_url, screening_id) == 30
    marker = sold_out_key(redis_prefix, screening_id)
    assert await rds.exists(marker), "the race's losers did not tell Redis it is sold out"
    # The marker lives one claim window (60 s here); a loaded machine can spend longer than
    # that before the arms end, and the buyer who then finds it gone rightly asks PostgreSQL.
    # Renew it, as that buyer would, so the arms measure what they claim: losers while Redis
    # knows the screening is sold out.
    await rds.set(marker, "0", px=600_000)

    async def arm(arm_tokens: list[str]) -> tuple[Counter[int], int, int]:
        baseline = await counters.backends()
        before = await counters.settled(baseline)
        calls_before = await counters.function_calls()
        async with own_server(settings, staff) as fresh:
            got = statuses(await race_places(fresh, arm_tokens, screening_id))
        xacts = await counters.settled(baseline) - before
        return got, xacts, await counters.function_calls() - calls_before

    solo, solo_xacts, solo_calls = await arm(tokens[:1])
    burst, burst_xacts, burst_calls = await arm(tokens[:200])
    print(
        f"transactions: lone loser's arm {solo_xacts}, 200 losers' arm {burst_xacts};"
        f" SQL function calls {solo_calls} and {burst_calls}"
    )
    assert solo == {409: 1} and burst == {409: 200}
    # No loser ran the booking functions (exact: nothing in the background calls them).
    assert solo_calls == burst_calls == 0, (solo_calls, burst_calls)
    # And no transaction of any other kind per loser: 200 would add 200. (Not "at most the
    # lone arm's": an idle backend of the test flushes its counters up to 10 s late, and
    # under load that landed in one arm or the other: 5 against 3, 3 against 5.)
    assert burst_xacts <= solo_xacts + 5, (solo_xacts, burst_xacts)
    assert await place_invariant(database_url, screening_id) == 30


async def test_1000_buyers_for_the_last_10_places_filter_off(
    make_api: AppFactory, users: Users, database_url: str, redis_prefix: str
):
    app = init_app(make_settings(database_url, redis_prefix, hold_filter="off"))
    api = await make_api(app=app)
    screening_id = await _presold(api, users, 20)
    replies = await race_places(api, await users.create(BUYERS), screening_id)
    assert_race(replies)
    assert await place_invariant(database_url, screening_id) == 20


async def test_1000_buyers_for_the_last_10_places_while_redis_is_flushed(
    make_api: AppFactory, users: Users, database_url: str, redis_prefix: str
):
    apis = [await make_api(), await make_api()]
    screening_id = await _presold(apis[0], users, 20)
    tokens = await users.create(BUYERS)
    client = aioredis.Redis.from_url(REDIS_URL)
    stop = asyncio.Event()
    flushes = 0

    async def flusher() -> None:
        nonlocal flushes
        while not stop.is_set():
            keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            flushes += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(flusher())
    try:
        halves = await asyncio.gather(
            race_places(apis[0], tokens[::2], screening_id),
            race_places(apis[1], tokens[1::2], screening_id),
        )
    finally:
        stop.set()
        await task
        await client.aclose()
    assert flushes > 0
    assert_race(halves[0] + halves[1])
    assert await place_invariant(database_url, screening_id) == 20


async def test_buyers_of_several_places_never_oversell(
    api: ApiClient, users: Users, database_url: str
):
    """1-4 places each, 100 buyers for 50 places: what is sold adds up to at most 50."""
    screening_id = await api.new_ga_screening(50)
    tokens = await users.create(100)
    start = asyncio.Event()

    async def one(i: int, token: str) -> tuple[int, int]:
        await start.wait()
        quantity = 1 + i % 4
        return quantity, (await api.book_places(token, screening_id, quantity)).status

    tasks = [asyncio.create_task(one(i, t)) for i, t in enumerate(tokens)]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    sold = sum(q for q, status in results if status == 201)
    assert all(status in (201, 409) for _, status in results)
    assert sold <= 50
    assert await place_invariant(database_url, screening_id) == sold
    # every 409 was honest: after the race, fewer places are left than the smallest loser wanted
    losers = [q for q, status in results if status == 409]
    if losers:
        assert 50 - sold < max(losers)
