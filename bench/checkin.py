"""Check-in benchmark: 50 concurrent scanners check in 5,000 tickets of one screening through
`POST /api/admin/checkin/` (target: >= 1,000 check-ins/s), then scan them all again (every
answer a 409 already_checked_in: the door's double scans).

Run: flock /tmp/bench.lock .venv/bin/python -m bench.checkin [--tickets 5000] [--scanners 50]
     [--workers 2]
It starts its own `cinema serve --workers N` on a fresh database (dropped afterwards) and
Redis key prefix. The movie, hall and screening go through the API; the 5,000 confirmed
tickets (1,000 bookings of 5 seats) are written with SQL, since making them through
bookings and payments would only measure those. Codes are signed as the server signs them
(cinema/boxoffice/codes.py with the key derived from the server's JWT_SECRET).

Prints one JSON object: rate, p50/p99 latency (nearest rank, bench/common.py), statuses,
the invariant read from PostgreSQL afterwards (every ticket checked in exactly once), and
the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.common import Api, SpawnedServer, hall_layout, log, percentile
from cinema.auth.model import Role
from cinema.auth.tokens import Principal, TokenIssuer
from cinema.boxoffice.codes import TicketCodes, derive_key
from cinema.store.migrations import migrate
from cinema.store.pool import drop_database

TICKETS_PER_BOOKING = 5

_BOOKINGS = """
    INSERT INTO bookings (reference, user_id, screening_id, status, amount, currency,
                          expires_at, hold_token, payment_status)
    SELECT 'C' || lpad(g::text, 7, '0'), $1, $2, 'CONFIRMED', 0, 'usd',
           now() + interval '1 day', 'bench', 'succeeded'
    FROM generate_series(1, $3) g
"""

# Booking n gets seats 5n .. 5n+4 (both numbered in id order).
_TICKETS = """
    INSERT INTO reservations (booking_id, screening_id, seat_id, status, expires_at)
    SELECT b.id, $1, s.id, 'CONFIRMED', now() + interval '1 day'
    FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n
            FROM bookings WHERE screening_id = $1) b
    JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n
            FROM seats WHERE hall_id = $2) s ON s.n / $3 = b.n
    RETURNING id
"""


async def _user(conn: asyncpg.Connection, role: Role) -> int:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (email, password_hash, role) VALUES ($1, 'x', $2) RETURNING id",
        f"bench-{role.value}-{secrets.token_hex(4)}@example.com",
        role.value,
    )
    return user_id


async def _screening(api: Api, admin: str, seats: int) -> tuple[int, int]:
    movie = await api.ok(
        "POST", "/api/admin/movies/", {"title": "Bench", "duration_minutes": 90}, admin, 201
    )
    hall = await api.ok(
        "POST", "/api/admin/halls/", {"name": "Bench", "layout": hall_layout(seats)}, admin, 201
    )
    screening = await api.ok(
        "POST",
        "/api/admin/screenings/",
        {
            "movie_id": movie["id"],
            "hall_id": hall["id"],
            "starts_at": "2099-01-01T19:00:00+00:00",
            "prices": {c: "10.00" for c in hall["categories"]},
            "currency": "usd",
        },
        admin,
        201,
    )
    return int(screening["id"]), int(hall["id"])


async def _tickets(dsn: str, screening_id: int, hall_id: int, count: int) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        customer = await _user(conn, Role.CUSTOMER)
        bookings = -(-count // TICKETS_PER_BOOKING)
        await conn.execute(_BOOKINGS, customer, screening_id, bookings)
        rows = await conn.fetch(_TICKETS, screening_id, hall_id, TICKETS_PER_BOOKING)
    finally:
        await conn.close()
    return [r["id"] for r in rows][:count]


async def _scan(
    api: Api, token: str, codes: list[str], scanners: int, screening_id: int
) -> dict[str, Any]:
    """Every code once, `scanners` at a time, each scanner on its own connection."""
    queue = iter(codes)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def scanner() -> None:
        for code in queue:
            started = time.perf_counter()
            status, _ = await api.call(
                "POST", "/api/admin/checkin/", {"code": code, "screening_id": screening_id}, token
            )
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(scanner() for _ in range(scanners)))
    seconds = time.perf_counter() - started
    return {
        "scans": len(codes),
        "seconds": round(seconds, 3),
        "per_second": round(len(codes) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def _invariant(dsn: str, screening_id: int) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS tickets, count(checked_in_at) AS checked_in"
            " FROM reservations WHERE screening_id = $1",
            screening_id,
        )
    finally:
        await conn.close()
    return dict(row)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cinema")
    dsn = f"{base.rpartition('/')[0]}/cinema_bench_checkin_{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_KEY_PREFIX": f"benchcheckin:{secrets.token_hex(4)}:",
        "JWT_SECRET": secret,
        "EXPIRY_SCHEDULER": "off",
        "FOLLOW_UPS": "inprocess",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_AUTH_PER_MINUTE": "0",
        "RATE_LIMIT_BOOKINGS_PER_MINUTE": "0",
        "DB_POOL_MAX": str(args.pool),
    }
    await migrate(dsn)
    server = SpawnedServer(env, args.workers, Path(tempfile.gettempdir()) / "bench-checkin.log")
    try:
        conn = await asyncpg.connect(dsn)
        try:
            admin_id, clerk_id = await _user(conn, Role.ADMIN), await _user(conn, Role.BOX_OFFICE)
        finally:
            await conn.close()
        issuer = TokenIssuer(secret, 3600)
        admin = issuer.issue(Principal(admin_id, True, Role.ADMIN))
        clerk = issuer.issue(Principal(clerk_id, False, Role.BOX_OFFICE))
        server.start(with_worker=False)
        connector = aiohttp.TCPConnector(limit=args.scanners)
        async with aiohttp.ClientSession(connector=connector) as session:
            api = Api(server.url, session)
            screening_id, hall_id = await _screening(api, admin, args.tickets)
            log(f"writing {args.tickets} confirmed tickets")
            ids = await _tickets(dsn, screening_id, hall_id, args.tickets)
            codes = TicketCodes(derive_key(secret))
            scan_codes = [codes.code(i) for i in ids]
            log(f"{args.scanners} scanners check in {len(scan_codes)} tickets")
            first = await _scan(api, clerk, scan_codes, args.scanners, screening_id)
            log("the same tickets again (all already checked in)")
            again = await _scan(api, clerk, scan_codes, args.scanners, screening_id)
        invariant = await _invariant(dsn, screening_id)
    finally:
        server.stop()
        await drop_database(dsn)
    return {
        "benchmark": "checkin",
        "tickets": len(ids),
        "scanners": args.scanners,
        "api_workers": args.workers,
        "first_scan": first,
        "second_scan": again,
        "invariant": invariant,
        "target_per_second": 1000,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=5000)
    parser.add_argument("--scanners", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="API processes")
    parser.add_argument("--pool", type=int, default=20, help="DB_POOL_MAX per API process")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    first, inv = figures["first_scan"], figures["invariant"]
    ok = first["statuses"] == {"200": figures["tickets"]} and inv["checked_in"] == inv["tickets"]
    ok = ok and figures["second_scan"]["statuses"] == {"409": figures["tickets"]}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
