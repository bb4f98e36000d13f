"""The API through Debian's PgBouncer in transaction mode (tests/pgbouncer_fixtures.py) with
DB_STATEMENT_CACHE_SIZE=0: bookings, the seat race, a payment, migrations from several
processes, and a PgBouncer killed and restarted under load. Invariants read from PostgreSQL
directly, not through PgBouncer."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import asyncpg

from cinema.store.migrations import migrate, migration_files
from cinema.store.pool import drop_database, ensure_database
from tests.client import ApiClient, wait_for
from tests.conftest import AppFactory, Users
from tests.payment_fixtures import CARD_OK, LocalStripe, PayApiFactory, wait_status
from tests.pgbouncer_fixtures import PgBouncer
from tests.test_race import Counted, live_reservations, race, statuses


async def _bounced_api(make_api: AppFactory, pgbouncer: PgBouncer, database_url: str) -> ApiClient:
    return await make_api(
        database_url=pgbouncer.url(database_url), db_statement_cache_size=0, db_pool_max=10
    )


async def test_hot_seat_and_overlapping_sets_through_pgbouncer(
    make_api: AppFactory, pgbouncer: PgBouncer, users: Users, database_url: str
) -> None:
    apis = [await _bounced_api(make_api, pgbouncer, database_url) for _ in range(2)]
    screening = await apis[0].new_screening()
    tokens = await users.create(100)
    seat = screening.seat_ids[0]
    replies = await race(apis, tokens, screening.id, [[seat]] * 100)
    assert statuses(replies) == {201: 1, 409: 99}
    assert [r["seat_id"] for r in await live_reservations(database_url, screening.id)] == [seat]

    # PostgreSQL alone decides (filter off): every loser's transaction goes through PgBouncer.
    off = await make_api(
        database_url=pgbouncer.url(database_url), db_statement_cache_size=0, hold_filter="off"
    )
    screening = await off.new_screening()
    s1, s2, s3 = screening.seat_ids[:3]
    counted = Counted()
    replies = await race([off], tokens[:60], screening.id, [[s1, s2], [s2, s3]] * 30)
    assert statuses(replies) == {201: 1, 409: 59}
    assert counted["postgres"] == 59
    rows = await live_reservations(database_url, screening.id)
    winner = next(r for r in replies if r.status == 201).body
    assert [r["seat_id"] for r in rows] == winner["seat_ids"]
    # and the rest of a booking's life: cancel, rebook
    token = tokens[0]
    booked = await off.book(token, screening.id, [screening.seat_ids[5]])
    assert booked.status == 201, booked
    assert (await off.delete(f"/api/bookings/{booked.body['id']}/", token=token)).status == 200
    assert (await off.book(tokens[1], screening.id, [screening.seat_ids[5]])).status == 201


async def test_card_payment_through_pgbouncer(
    make_pay_api: PayApiFactory,
    stripe_fake: LocalStripe,
    pgbouncer: PgBouncer,
    users: Users,
    database_url: str,
) -> None:
    pay = await make_pay_api(database_url=pgbouncer.url(database_url), db_statement_cache_size=0)
    await stripe_fake.send_webhooks_to(pay.webhook_url)
    api = pay.client
    screening = await api.new_screening(prices={"standard": "7.00"})
    token = await users.one()
    reply = await api.book(token, screening.id, screening.seat_ids[:2])
    assert reply.status == 201, reply
    assert await stripe_fake.pay(reply.body["payment"]["payment_intent_id"], CARD_OK) == "succeeded"
    confirmed = await wait_status(api, token, reply.body["id"], "CONFIRMED")
    assert confirmed["payment"]["status"] == "succeeded"
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.fetchval("SELECT status FROM bookings WHERE id = $1", reply.body["id"])
    finally:
        await conn.close()
    assert status == "CONFIRMED"


async def test_migrations_from_several_migrators_through_pgbouncer(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """The migration lock is transaction-scoped: a session lock through transaction pooling
    would stay on one server connection and its unlock could land on another."""
    direct = f"{database_url}_mig{secrets.token_hex(2)}"
    await ensure_database(direct)  # PgBouncer connects only to databases that exist
    try:
        results = await asyncio.gather(*(migrate(pgbouncer.url(direct)) for _ in range(4)))
        expected = [p.name for p in migration_files()]
        assert sorted(len(r) for r in results) == [0, 0, 0, len(expected)]
        assert await migrate(pgbouncer.url(direct)) == []
        conn = await asyncpg.connect(direct)
        try:
            names = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]
            leftover = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            )
        finally:
            await conn.close()
        assert names == expected
        assert leftover == 0
    finally:
        await drop_database(direct)


async def test_pgbouncer_restart_gives_json_503s_then_recovers(
    make_api: AppFactory, pgbouncer: PgBouncer, users: Users, database_url: str
) -> None:
    api = await _bounced_api(make_api, pgbouncer, database_url)
    screenings = [await api.new_screening() for _ in range(4)]
    tokens = await users.create(80)
    stop = asyncio.Event()
    replies: list[Any] = []

    async def buyer(i: int) -> None:
        while not stop.is_set():
            screening = screenings[i % 4]
            seat = screening.seat_ids[(i + len(replies)) % 10]
            replies.append(await api.book(tokens[i], screening.id, [seat]))
            await asyncio.sleep(0.02)

    buyers = [asyncio.create_task(buyer(i)) for i in range(40)]
    try:
        await wait_for(lambda: _some(replies, 20), what="bookings before the restart")
        before = len(replies)
        pgbouncer.restart()
        await wait_for(lambda: _some(replies, before + 200), within=30, what="bookings after")
    finally:
        stop.set()
        await asyncio.gather(*buyers)
    codes = statuses(replies)
    assert set(codes) <= {201, 409, 503}, codes
    for reply in replies:
        if reply.status == 503:
            assert reply.body["error"]["code"], reply
            assert "Retry-After" in reply.headers
    print(f"pgbouncer restart under load: {dict(codes)}")

    # Recovered without restarting the API: a fresh booking goes through PgBouncer.
    fresh = await api.new_screening()
    booked = await api.book(tokens[79], fresh.id, [fresh.seat_ids[0]])
    assert booked.status == 201, booked
    for screening in [*screenings, fresh]:
        rows = await live_reservations(database_url, screening.id)
        seats = [r["seat_id"] for r in rows]
        assert len(seats) == len(set(seats))


async def _some(replies: list[Any], count: int) -> bool:
    return len(replies) >= count
