"""General admission while other buyers hold the last places in open transactions that then
roll back: the refusal must not tell Redis the screening is sold out, and the places go to
the next buyer (real PostgreSQL and Redis; invariants read from PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from cinema.holds import sold_out_key
from tests.client import ApiClient
from tests.conftest import AppFactory, Users
from tests.test_general_admission import place_invariant

# Long enough that a wrongly written sold-out marker outlives the test's next request.
WINDOW = {"claim_provisional_seconds": 60, "redis_timeout_seconds": 5.0}


async def _places_hall(database_url: str, screening_id: int) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        hall_id: int = await conn.fetchval(
            "SELECT hall_id FROM screenings WHERE id = $1", screening_id
        )
        return hall_id
    finally:
        await conn.close()


async def test_places_locked_by_a_buyer_who_rolls_back_are_not_sold_out(
    make_api: AppFactory, users: Users, database_url: str, redis_prefix: str, rds: aioredis.Redis
) -> None:
    api = await make_api(**WINDOW)
    screening_id = await api.new_ga_screening(3)
    assert (await api.book_places(await users.one(), screening_id, 2)).status == 201
    hall_id = await _places_hall(database_url, screening_id)
    holder = await asyncpg.connect(database_url)
    try:
        # Another buyer's booking, mid-way: it holds the last place's row lock (taken by the
        # same function), and will fail later in its transaction (say its promo code).
        tx = holder.transaction()
        await tx.start()
        held = await holder.fetchval("SELECT cinema_take_places($1, $2, 1)", screening_id, hall_id)
        assert len(held) == 1
        buyer = await users.one()
        refused = await api.book_places(buyer, screening_id, 1)
        assert refused.status == 409, refused
        error = refused.body["error"]
        assert error["code"] == "sold_out"
        assert error["available"] == 0 and error["being_booked"] == 1, error
        assert "being booked by other buyers" in error["message"]
        assert not await rds.exists(sold_out_key(redis_prefix, screening_id))
        await tx.rollback()
    finally:
        await holder.close()
    assert not await rds.exists(sold_out_key(redis_prefix, screening_id))
    again = await api.book_places(buyer, screening_id, 1)
    assert again.status == 201, again
    assert await place_invariant(database_url, screening_id) == 3
    # now truly sold out: that refusal may (and does) tell Redis
    last = await api.book_places(await users.one(), screening_id, 1)
    assert last.status == 409 and last.body["error"]["being_booked"] == 0, last
    assert await rds.get(sold_out_key(redis_prefix, screening_id)) == b"0"


CAPACITY = 20
HONEST = 30
SPOILERS = 30


async def _spoilers(api: ApiClient, users: Users, code: str) -> list[str]:
    """Buyers whose every further booking with `code` locks places, then is refused at the
    promo step (they used their one use elsewhere): their transactions write nothing."""
    elsewhere = await api.new_ga_screening(SPOILERS)
    tokens = await users.create(SPOILERS)
    for token in tokens:
        first = await api.book_with(token, elsewhere, quantity=1, promo_code=code)
        assert first.status == 201, first
    return tokens


async def test_60_buyers_with_rolling_back_spoilers_sell_exactly_capacity(
    make_api: AppFactory, users: Users, database_url: str, redis_prefix: str, rds: aioredis.Redis
) -> None:
    api = await make_api(**WINDOW)
    made = await api.post(
        "/api/admin/promo-codes/",
        {"code": "SPOILER", "kind": "percent", "value": "10", "max_uses": 1000,
         "max_uses_per_customer": 1},
        token=api.staff_token,
    )  # fmt: skip
    assert made.status == 201, made
    spoilers = await _spoilers(api, users, "SPOILER")
    honest = await users.create(HONEST)
    screening_id = await api.new_ga_screening(CAPACITY)
    start = asyncio.Event()

    done = asyncio.Event()

    async def spoil(token: str) -> list[Any]:
        """Keeps locking places and rolling back until every honest buyer has an answer."""
        await start.wait()
        replies = []
        while not done.is_set() and len(replies) < 500:
            replies.append(
                await api.book_with(token, screening_id, quantity=1, promo_code="SPOILER")
            )
        return replies

    async def buy(i: int, token: str) -> Any:
        """A client that retries while the last places are only being booked by others;
        they arrive over about a second, so many come when few places are left."""
        await start.wait()
        await asyncio.sleep(0.03 * i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while True:
            reply = await api.book_places(token, screening_id, 1)
            busy = reply.status == 409 and reply.body["error"].get("being_booked", 0) > 0
            if not busy or loop.time() > deadline:
                return reply
            await asyncio.sleep(0.01)

    spoiling = [asyncio.create_task(spoil(t)) for t in spoilers]
    buying = [asyncio.create_task(buy(i, t)) for i, t in enumerate(honest)]
    await asyncio.sleep(0)
    start.set()
    bought = await asyncio.gather(*buying)
    done.set()
    spoiled = [r for rs in await asyncio.gather(*spoiling) for r in rs]
    assert spoiled and {r.status for r in spoiled} == {409}
    assert {r.body["error"]["code"] for r in spoiled} <= {"promo_code_exhausted", "sold_out"}
    assert Counter(r.status for r in bought) == {201: CAPACITY, 409: HONEST - CAPACITY}, [
        r.body for r in bought if r.status != 201
    ]
    for reply in bought:
        if reply.status == 409:
            assert reply.body["error"]["code"] == "sold_out"
            assert reply.body["error"].get("being_booked") == 0, reply
    assert await place_invariant(database_url, screening_id) == CAPACITY
    conn = await asyncpg.connect(database_url)
    try:
        written = await conn.fetchval(
            "SELECT count(*) FROM bookings WHERE screening_id = $1 AND promo_code_id = $2",
            screening_id,
            made.body["id"],
        )
    finally:
        await conn.close()
    assert written == 0  # the spoilers' transactions wrote nothing
    marker = await rds.get(sold_out_key(redis_prefix, screening_id))
    assert marker in (None, b"0")


async def test_places_freed_below_the_highest_held_one_are_found(
    api: ApiClient, users: Users, database_url: str
) -> None:
    """The scan starts after the highest place held live (db/012_2); a cancel below it
    leaves a hole that only the second pass, from the first place, can hand out."""
    screening_id = await api.new_ga_screening(5)
    first_token = await users.one()
    first = await api.book_places(first_token, screening_id, 2)
    assert first.status == 201
    assert (await api.book_places(await users.one(), screening_id, 3)).status == 201
    cancelled = await api.delete(f"/api/bookings/{first.body['id']}/", token=first_token)
    assert cancelled.status == 200
    again = await api.book_places(await users.one(), screening_id, 2)
    assert again.status == 201, again
    assert await place_invariant(database_url, screening_id) == 5
    full = await api.book_places(await users.one(), screening_id, 1)
    assert full.status == 409 and full.body["error"]["available"] == 0
