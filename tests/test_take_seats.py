"""The one seat-taking function (db/004_take_seats.sql), called straight, with real concurrency:
many PostgreSQL connections released at once, every race ended by reading the rows back."""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cinema.booking.errors import SeatsUnavailable
from cinema.booking.model import BookingStatus, NewBooking
from cinema.store.bookings import PgBookingStore
from cinema.store.pool import create_pool

CREATE = """
    SELECT (c.booking).id, c.taken
    FROM cinema_create_booking($1, $2, $3, 1000, 'usd', $4, 'token', NULL, $5::bigint[],
                               ARRAY(SELECT 'adult' FROM unnest($5::bigint[])),
                               ARRAY(SELECT 0::bigint FROM unnest($5::bigint[])), 1000, 0, 0,
                               NULL) AS c
"""


async def new_screening(conn: Any, seats: int) -> tuple[int, list[int]]:
    hall = await conn.fetchval("INSERT INTO halls (name, layout) VALUES ('T', '{}') RETURNING id")
    seat_ids = [
        r["id"]
        for r in await conn.fetch(
            "INSERT INTO seats (hall_id, row_label, row_index, number, position, category)"
            " SELECT $1, 'A', 0, n, n, 'standard' FROM generate_series(1, $2) AS n"
            " RETURNING id",
            hall,
            seats,
        )
    ]
    movie = await conn.fetchval(
        "INSERT INTO movies (title, duration_minutes) VALUES ('T', 90) RETURNING id"
    )
    screening = await conn.fetchval(
        "INSERT INTO screenings (movie_id, hall_id, starts_at, prices, currency)"
        " VALUES ($1, $2, now() + interval '1 day', '{\"standard\": 1000}', 'usd') RETURNING id",
        movie,
        hall,
    )
    return screening, sorted(seat_ids)


async def new_user(conn: Any) -> int:
    email = f"t{secrets.token_hex(6)}@example.com"
    user_id: int = await conn.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id", email
    )
    return user_id


async def create(
    conn: Any, user: int, screening: int, seats: list[int], hold: float = 600
) -> tuple[int | None, list[int]]:
    row = await conn.fetchrow(CREATE, secrets.token_hex(4), user, screening, hold, seats)
    return row["id"], list(row["taken"])


async def live(conn: Any, screening: int) -> dict[int, int]:
    rows = await conn.fetch(
        "SELECT seat_id, booking_id FROM reservations"
        " WHERE screening_id = $1 AND status <> 'CANCELLED'",
        screening,
    )
    seats = Counter(r["seat_id"] for r in rows)
    assert all(n == 1 for n in seats.values()), seats
    return {r["seat_id"]: r["booking_id"] for r in rows}


async def race(conns: list[Any], calls: list[Any]) -> list[Any]:
    """Each call runs on its own connection; all start at the same moment."""
    start = asyncio.Event()

    async def one(conn: Any, call: Any) -> Any:
        await start.wait()
        return await call(conn)

    tasks = [asyncio.create_task(one(c, f)) for c, f in zip(conns, calls, strict=True)]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.gather(*tasks)  # a deadlock or a unique violation fails the test


@pytest.fixture
async def conns(database_url: str) -> Any:
    opened = await asyncio.gather(*(asyncpg.connect(database_url) for _ in range(50)))
    yield list(opened)
    await asyncio.gather(*(c.close() for c in opened))


async def test_status_names_are_the_database_enum(pool: Any) -> None:
    names = await pool.fetchval("SELECT enum_range(NULL::booking_status)::text[]")
    assert names == [s.value for s in BookingStatus]


async def test_a_taken_seat_is_reported_and_nothing_is_written(pool: Any) -> None:
    async with pool.acquire() as conn:
        screening, (s1, s2, s3, *_) = await new_screening(conn, 5)
        user = await new_user(conn)
        first, taken = await create(conn, user, screening, [s1, s2])
        assert first is not None and taken == []
        assert await create(conn, user, screening, [s2, s3]) == (None, [s2])
        assert await create(conn, user, screening, [s3, 10**12]) == (None, [10**12])
        assert await live(conn, screening) == {s1: first, s2: first}
        assert (
            await conn.fetchval("SELECT count(*) FROM bookings WHERE screening_id = $1", screening)
            == 1
        )


async def test_50_connections_race_overlapping_seat_sets(conns: list[Any]) -> None:
    rng = random.Random(10)
    for _ in range(5):  # five fresh rounds
        screening, seats = await new_screening(conns[0], 12)
        user = await new_user(conns[0])
        wanted = []
        for _ in conns:
            first = rng.randrange(len(seats))
            wanted.append(seats[first : first + rng.randint(1, 4)])

        calls = [functools.partial(create, user=user, screening=screening, seats=w) for w in wanted]
        results = await race(conns, calls)
        winners = {bid: w for (bid, taken), w in zip(results, wanted, strict=True) if bid}
        won_seats = [s for w in winners.values() for s in w]
        assert winners and len(won_seats) == len(set(won_seats)), "a seat was sold twice"
        for (bid, taken), w in zip(results, wanted, strict=True):
            if bid is None:  # a loser names seats in its set that a winner holds
                assert taken and set(taken) <= set(w) & set(won_seats), (w, taken)
        # straight from PostgreSQL: the winners' seats, each once, and no loser's booking
        assert await live(conns[0], screening) == {s: bid for bid, w in winners.items() for s in w}
        written = await conns[0].fetch(
            "SELECT id, status FROM bookings WHERE screening_id = $1", screening
        )
        assert {r["id"]: r["status"] for r in written} == dict.fromkeys(winners, "PENDING")


async def test_racers_end_the_same_lapsed_holds_without_deadlock(
    database_url: str, conns: list[Any]
) -> None:
    """Four lapsed holds of two seats each; 48 buyers each want one seat of two different
    holds, so many transactions end overlapping sets of holds at once. Through the store."""
    screening, seats = await new_screening(conns[0], 8)
    user = await new_user(conns[0])
    holds = [seats[i : i + 2] for i in range(0, 8, 2)]
    pairs = [
        [a, b] for x, y in itertools.combinations(holds, 2) for a, b in itertools.product(x, y)
    ] * 2
    pool = await create_pool(database_url, len(pairs), len(pairs))
    store = PgBookingStore(pool)
    try:
        lapsed = [
            (await store.create_booking(_new_booking(user, screening, h, -60))).id for h in holds
        ]
        tasks = [asyncio.create_task(_book_or_conflict(store, user, screening, p)) for p in pairs]
        results = await asyncio.gather(*tasks)
    finally:
        await pool.close()
    winners = {bid: p for bid, p in zip(results, pairs, strict=True) if bid is not None}
    won_seats = [s for p in winners.values() for s in p]
    assert winners and len(won_seats) == len(set(won_seats))
    now_live = await live(conns[0], screening)
    assert {s: b for s, b in now_live.items() if b not in lapsed} == {
        s: bid for bid, p in winners.items() for s in p
    }
    # A lapsed hold is ended by whoever takes one of its seats. A buyer who finds another of
    # its seats taken returns before ending anything, so a hold every one of whose buyers
    # lost elsewhere may stay PENDING past its deadline, which is free to the next buyer.
    ended = await conns[0].fetch(
        "SELECT id, status, cancel_reason, expires_at <= now() AS lapsed FROM bookings"
        " WHERE id = ANY($1::bigint[]) ORDER BY id",
        lapsed,
    )
    untouched = {b for b in now_live.values() if b in lapsed}
    for row in ended:
        if row["id"] in untouched:
            assert (row["status"], row["lapsed"]) == ("PENDING", True), row
        else:
            assert (row["status"], row["cancel_reason"]) == ("CANCELLED", "expired"), row
    assert len(untouched) < len(lapsed)  # at least one hold was taken over and ended


async def _book_or_conflict(
    store: PgBookingStore, user: int, screening: int, seats: list[int]
) -> int | None:
    try:
        return (await store.create_booking(_new_booking(user, screening, seats))).id
    except SeatsUnavailable as exc:
        assert set(exc.seat_ids) <= set(seats)
        return None


def _new_booking(user: int, screening: int, seats: list[int], hold: int = 600) -> NewBooking:
    return NewBooking(
        reference=secrets.token_hex(4),
        user_id=user,
        screening_id=screening,
        hall_id=0,
        seat_ids=tuple(seats),
        amount=1000,
        currency="usd",
        hold_ttl_seconds=hold,
        hold_token="token",
        idempotency_key=None,
    )


async def test_the_unique_index_still_decides_and_maps_to_409(database_url: str, pool: Any) -> None:
    """A rogue writer that skips the seat locks: the function's insert waits on its row in
    reservations_live_seat_uidx, then fails whole; the store names the seat, writes nothing."""
    async with pool.acquire() as conn:
        screening, (s1, s2, *_) = await new_screening(conn, 3)
        user = await new_user(conn)
    rogue = await asyncpg.connect(database_url)
    store_pool = await create_pool(database_url, 1, 1)
    try:
        tx = rogue.transaction()
        await tx.start()
        rogue_id = await rogue.fetchval(
            "INSERT INTO bookings (reference, user_id, screening_id, amount, currency,"
            " expires_at, hold_token) VALUES ($1, $2, $3, 0, 'usd', now() + interval '1 h', 'r')"
            " RETURNING id",
            secrets.token_hex(4),
            user,
            screening,
        )
        await rogue.execute(
            "INSERT INTO reservations (booking_id, screening_id, seat_id, status, expires_at)"
            " VALUES ($1, $2, $3, 'PENDING', now() + interval '1 h')",
            rogue_id,
            screening,
            s1,
        )
        booking = asyncio.create_task(
            PgBookingStore(store_pool).create_booking(_new_booking(user, screening, [s1, s2]))
        )
        await _wait_for_lock_wait(pool)
        await tx.commit()
        with pytest.raises(SeatsUnavailable) as caught:
            await booking
        assert caught.value.seat_ids == [s1]
    finally:
        await store_pool.close()
        await rogue.close()
    async with pool.acquire() as conn:
        assert await live(conn, screening) == {s1: rogue_id}
        assert (
            await conn.fetchval("SELECT count(*) FROM bookings WHERE screening_id = $1", screening)
            == 1
        )


async def _wait_for_lock_wait(pool: Any, within: float = 10.0) -> None:
    """Until a session of this test's database waits on a lock (here: only the booking can)."""
    deadline = time.monotonic() + within
    while not await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    ):
        assert time.monotonic() < deadline, "the booking never waited on the rogue's row"
        await asyncio.sleep(0.02)


def test_the_rules_page_quotes_the_function_as_it_is() -> None:
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "concurrency.md").read_text()
    quoted = page.split("```sql\n", 1)[1].split("```", 1)[0]
    assert "cinema_take_seats" in quoted
    assert quoted.strip() in (root / "db" / "004_take_seats.sql").read_text()
