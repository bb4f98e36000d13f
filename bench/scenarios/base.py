"""What the scenarios share: the PostgreSQL monitor, the fixture, an arm under test and the
base of `Run` (its checks and helpers)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from bench.common import Api, database_name, with_database

MAX_SEATS_PER_BOOKING = 10  # the API's limit, used to fill the browse screening quickly
PG_IDLE_FLUSH_SECONDS = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) + a margin


class Postgres:
    """A monitoring connection to the `postgres` database, so that our own queries never count
    in the benchmark database's transaction counters."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.name = database_name(dsn)

    async def _about_our_database(self, query: str) -> list[Any]:
        """Rows of a statistics query whose $1 is the benchmark database's name."""
        conn = await asyncpg.connect(with_database(self.dsn, "postgres"))
        try:
            return list(await conn.fetch(query, self.name))
        finally:
            await conn.close()

    async def transactions(self) -> int:
        rows = await self._about_our_database(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1"
        )
        return int(rows[0][0] or 0) if rows else 0

    async def backend_pids(self) -> list[int]:
        rows = await self._about_our_database(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
        )
        return [r["pid"] for r in rows]

    async def double_bookings(self, screening_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Seats of these screenings held or sold by more than one live booking. The booking's
        status is the judge (not only the reservation's), so an inconsistent row shows up too."""
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                """
                SELECT r.screening_id, r.seat_id, array_agg(b.id ORDER BY b.id) AS bookings
                FROM reservations r JOIN bookings b ON b.id = r.booking_id
                WHERE r.screening_id = ANY($1::bigint[])
                  AND (r.status <> 'CANCELLED' OR b.status <> 'CANCELLED')
                GROUP BY r.screening_id, r.seat_id
                HAVING count(*) FILTER (
                    WHERE b.status <> 'CANCELLED'
                      AND NOT (b.status = 'PENDING' AND b.expires_at <= now())) > 1
                """,
                list(screening_ids),
            )
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    async def live_bookings(self, screening_id: int) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            value = await conn.fetchval(
                "SELECT count(*) FROM bookings WHERE screening_id = $1 AND status <> 'CANCELLED'",
                screening_id,
            )
        finally:
            await conn.close()
        return int(value)

    async def clone_users(self, template_email: str, count: int, tag: str) -> list[str]:
        """Insert `count` customers sharing the template's password hash (argon2 is slow by
        design; hashing 200 passwords would only measure argon2)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                """
                INSERT INTO users (email, password_hash, is_staff)
                SELECT 'bench-' || $2 || '-' || n || '@example.com', u.password_hash, false
                FROM users u, generate_series(1, $3) AS n
                WHERE lower(u.email) = lower($1)
                RETURNING email
                """,
                template_email,
                tag,
                count,
            )
        finally:
            await conn.close()
        return [r["email"] for r in rows]


@dataclass
class Fixture:
    """What every arm shares: one movie, three halls, a staff token and U customer tokens."""

    staff: str
    tokens: list[str]
    movie_id: int
    halls: dict[str, int]
    emails: list[str] = field(default_factory=list)  # the customers', tokens[i] is emails[i]'s


@dataclass
class Arm:
    label: str
    url: str
    api_pids: Callable[[], list[int]]
    worker_pids: Callable[[], list[int]]


async def new_screening(api: Api, fixture: Fixture, hall: str) -> tuple[int, list[int]]:
    screening = await api.ok(
        "POST",
        "/api/admin/screenings/",
        {
            "movie_id": fixture.movie_id,
            "hall_id": fixture.halls[hall],
            "starts_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            "prices": {"standard": "9.50"},
            "currency": "eur",
        },
        fixture.staff,
        want=201,
    )
    return screening["id"], await api.seat_ids(screening["id"])


async def warm(api: Api, screening_id: int, connections: int = 32) -> None:
    """Read the seat map on `connections` fresh connections, one after the other, so that
    every API process (they share one listening socket) has the screening cached. One after
    the other: a burst of connections is accepted by whichever process wakes first."""
    for _ in range(connections):
        async with aiohttp.ClientSession() as fresh:
            await Api(api.url, fresh).ok("GET", f"/api/screenings/{screening_id}/seats/")


class RunBase:
    """One benchmark run: its settings, PostgreSQL, the shared fixture, the failures seen."""

    def __init__(self, args: argparse.Namespace, pg: Postgres, fixture: Fixture) -> None:
        self.args = args
        self.pg = pg
        self.fixture = fixture
        self.failures: list[str] = []

    async def _with_api(self, url: str, fn: Callable[[Api], Any]) -> Any:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            return await fn(Api(url, session))

    def _check(self, arm: Arm, scenario: str, screening_ids: list[int]) -> dict[str, Any]:
        doubles = asyncio.run(self.pg.double_bookings(screening_ids))
        if doubles:
            self.failures.append(f"{arm.label}/{scenario}: seats held or sold twice: {doubles[:5]}")
        return {"double_booked_seats": len(doubles), "examples": [str(d) for d in doubles[:5]]}

    def _settle(self) -> None:
        if self.args.stats_settle > 0:
            time.sleep(self.args.stats_settle)

    def _pg_pids(self) -> list[int]:
        return asyncio.run(self.pg.backend_pids())
