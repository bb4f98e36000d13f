#!/usr/bin/env python3
"""On-sale benchmark: hot seat, onsale (1 seat and 1-4 seats), browse; one JSON + one chart.

    python bench/onsale.py --spawn                                 # start our own server
    python bench/onsale.py --spawn --compare filter=on,filter=off  # both arms, alternating
    python bench/onsale.py --url http://127.0.0.1:8000 --database-url postgresql://.../cinema

Scenarios (each followed by a PostgreSQL check that no seat is held or sold twice):
  hot      C clients released at the same instant against one seat: statuses, latency and the
           PostgreSQL transactions the burst caused (pg_stat_database, after a settle pause:
           backends flush their counters at most every 10 s when idle).
  onsale   U users book random seats that still look free, 1 seat a request, until the hall
           sells out: bookings/s, requests/s, conflicts, latency, CPU seconds per request.
  onsale4  the same with 1-4 seats a request, while `browse` readers read the seat map of a
           full 500-seat screening; `browse` is also measured alone afterwards.
The load runs from --load-procs processes (default 2) so the client is not the bottleneck of
one core. Results: bench/results/onsale-<time>.json and .png. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

if __package__ in (None, ""):  # run as `python bench/onsale.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PASSWORD,
    ROOT,
    Api,
    CpuMeter,
    SpawnedServer,
    cdf_points,
    cli_has_command,
    database_name,
    hall_layout,
    log,
    memory_kb,
    percentiles,
    reset_peak_rss,
    with_database,
)
from bench.onsale_load import run_children, split
from bench.onsale_report import chart, machine, ratios, tables

DEFAULT_RESULTS = ROOT / "bench" / "results"
MAX_SEATS_PER_BOOKING = 10  # the API's limit, used to fill the browse screening quickly
PG_IDLE_FLUSH_SECONDS = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) + a margin


# --- PostgreSQL: transaction counters, backends, double-booking check ----------------------
class Postgres:
    """A monitoring connection to the `postgres` database, so that our own queries never count
    in the benchmark database's transaction counters."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.name = database_name(dsn)

    async def _admin(self) -> Any:
        return await asyncpg.connect(with_database(self.dsn, "postgres"))

    async def transactions(self) -> int:
        conn = await self._admin()
        try:
            value = await conn.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                self.name,
            )
        finally:
            await conn.close()
        return int(value or 0)

    async def backend_pids(self) -> list[int]:
        conn = await self._admin()
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.name,
            )
        finally:
            await conn.close()
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


def run_cinema(env: dict[str, str], *args: str) -> None:
    """Run one `cinema` command with the benchmark's settings; raise with its stderr if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "cinema", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cinema {args[0]} failed: {done.stderr.strip()}")


async def create_fixture(
    url: str, pg: Postgres, env: dict[str, str], args: argparse.Namespace
) -> Fixture:
    tag = secrets.token_hex(4)
    staff_email = f"bench-staff-{tag}@example.com"
    await asyncio.to_thread(
        run_cinema, env, "createuser", "--staff", "--email", staff_email, "--password", PASSWORD
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        api = Api(url, session)
        staff = await api.token(staff_email)
        # One customer through the public registration endpoint; the rest share its hash.
        first = f"bench-{tag}-0@example.com"
        await api.ok("POST", "/api/auth/register", {"email": first, "password": PASSWORD}, want=201)
        emails = [first, *await pg.clone_users(first, args.users - 1, tag)]
        log(f"logging in {len(emails)} users (argon2 verify, concurrently)")
        gate = asyncio.Semaphore(16)

        async def login(email: str) -> str:
            async with gate:
                return await api.token(email)

        began = time.monotonic()
        tokens = list(await asyncio.gather(*(login(e) for e in emails)))
        log(f"logged in {len(tokens)} users in {time.monotonic() - began:.1f} s")
        movie = await api.ok(
            "POST",
            "/api/admin/movies/",
            {"title": "Benchmark", "description": "", "duration_minutes": 120},
            staff,
            want=201,
        )
        halls = {}
        for name, seats in (("hot", 10), ("onsale", args.seats), ("browse", args.browse_seats)):
            hall = await api.ok(
                "POST",
                "/api/admin/halls/",
                {"name": f"bench {name}", "layout": hall_layout(seats)},
                staff,
                want=201,
            )
            halls[name] = hall["id"]
    return Fixture(staff, tokens, movie["id"], halls)


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


# --- scenarios -------------------------------------------------------------------------------
@dataclass
class Arm:
    label: str
    url: str
    api_pids: Callable[[], list[int]]
    worker_pids: Callable[[], list[int]]


class Run:
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

    def hot(self, arm: Arm) -> dict[str, Any]:
        args = self.args

        async def prepare(api: Api) -> tuple[int, list[int]]:
            screening_id, seats = await new_screening(api, self.fixture, "hot")
            await warm(api, screening_id)
            await api.ok(
                "POST",
                "/api/bookings/",
                {"screening_id": screening_id, "seat_ids": [seats[1]]},
                self.fixture.tokens[0],
                want=201,
            )
            return screening_id, seats

        screening_id, seats = asyncio.run(self._with_api(arm.url, prepare))
        self._settle()
        xact_before = asyncio.run(self.pg.transactions())
        sizes = _parts(args.clients, args.load_procs)
        token_parts = split(self.fixture.tokens, len(sizes))
        jobs = [
            (
                "hot",
                {
                    "url": arm.url,
                    "screening_id": screening_id,
                    "seat_id": seats[0],
                    "clients": size,
                    "tokens": token_parts[i % len(token_parts)],
                },
            )
            for i, size in enumerate(sizes)
        ]
        api_cpu = CpuMeter(arm.api_pids)
        results = [r for _, r in run_children(jobs, on_start=api_cpu.start)]
        api_cpu_s = api_cpu.stop()
        self._settle()
        xact_after = asyncio.run(self.pg.transactions())
        statuses = Counter(s for r in results for s in r["statuses"])
        latencies = [x for r in results for x in r["latencies"]]
        summary = {
            "scenario": "hot",
            "clients": args.clients,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "winners": statuses.get(201, 0),
            "latency_ms": percentiles(latencies),
            "burst_ms": round(max(r["burst_ms"] for r in results), 1),
            "pg_transactions": xact_after - xact_before,
            "pg_transactions_settled": args.stats_settle >= PG_IDLE_FLUSH_SECONDS,
            "api_cpu_s": api_cpu_s,
            "api_cpu_ms_per_request": round(api_cpu_s * 1000 / max(1, args.clients), 3),
            "loadgen_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
            "warmup": "32 seat-map reads, each on a fresh connection, + 1 booking of another seat",
            "check": self._check(arm, "hot", [screening_id]),
            "cdf_ms": cdf_points(latencies),
        }
        if summary["winners"] != 1:
            self.failures.append(f"{arm.label}/hot: {summary['winners']} winners, expected 1")
        return summary

    def onsale(self, arm: Arm, max_seats: int, with_browse: bool) -> dict[str, Any]:
        name = "onsale" if max_seats == 1 else f"onsale{max_seats}"

        async def prepare(api: Api) -> tuple[int, list[int], int | None]:
            screening_id, seats = await new_screening(api, self.fixture, "onsale")
            await warm(api, screening_id)
            browse_id = await self._full_screening(api) if with_browse else None
            return screening_id, seats, browse_id

        screening_id, seats, browse_id = asyncio.run(self._with_api(arm.url, prepare))
        jobs = self._onsale_jobs(arm.url, screening_id, seats, max_seats, browse_id)
        api_cpu, pg_cpu = CpuMeter(arm.api_pids), CpuMeter(self._pg_pids)
        results = run_children(
            jobs, stop_after={"onsale"}, on_start=lambda: (api_cpu.start(), pg_cpu.start())
        )
        api_cpu_s, pg_cpu_s = api_cpu.stop(), pg_cpu.stop()
        sales = [r for k, r in results if k == "onsale"]
        counts = asyncio.run(self._with_api(arm.url, lambda api: api.seat_counts(screening_id)))
        summary: dict[str, Any] = {
            "scenario": name,
            "users": len(self.fixture.tokens),
            "seats": len(seats),
            "seats_per_request": f"1-{max_seats}" if max_seats > 1 else "1",
            "sold_out": counts.get("available", -1) == 0,
            **sales_summary(sales),
            "api_cpu_s": api_cpu_s,
            "pg_cpu_s": pg_cpu_s,
            "loadgen_cpu_s": round(sum(r["cpu_s"] for _, r in results), 2),
        }
        checked = [screening_id] + ([browse_id] if browse_id else [])
        summary["check"] = self._sales_check(arm, name, checked, sales, summary["bookings"])
        summary["cdf_ms"] = cdf_points([x for r in sales for x in r["latencies"]])
        browse = [r for k, r in results if k == "browse"]
        all_requests = summary["requests"] + sum(sum(r["statuses"].values()) for r in browse)
        summary["api_cpu_ms_per_request"] = round(api_cpu_s * 1000 / max(1, all_requests), 3)
        summary["pg_cpu_ms_per_request"] = round(pg_cpu_s * 1000 / max(1, all_requests), 3)
        if browse:
            summary["cpu_note"] = "CPU per request counts the concurrent browse reads too"
            summary["browse"] = self._browse_summary("browse_during_" + name, browse)
        return summary

    def _onsale_jobs(
        self,
        url: str,
        screening_id: int,
        seats: list[int],
        max_seats: int,
        browse_id: int | None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The users split over --load-procs processes, plus one browse process if asked."""
        jobs: list[tuple[str, dict[str, Any]]] = [
            (
                "onsale",
                {
                    "url": url,
                    "screening_id": screening_id,
                    "seat_ids": seats,
                    "tokens": part,
                    "max_seats": max_seats,
                },
            )
            for part in split(self.fixture.tokens, self.args.load_procs)
        ]
        if browse_id is not None:
            jobs.append(
                ("browse", {"url": url, "screening_id": browse_id, "readers": self.args.readers})
            )
        return jobs

    def _sales_check(
        self,
        arm: Arm,
        name: str,
        screening_ids: list[int],
        sales: list[dict[str, Any]],
        bookings: int,
    ) -> dict[str, Any]:
        """PostgreSQL's double-booking check, plus the clients' view: no seat in two 201s,
        and as many live bookings in PostgreSQL as 201 answers."""
        booked = [seat for r in sales for b in r["booked"] for seat in b]
        in_pg = asyncio.run(self.pg.live_bookings(screening_ids[0]))
        check = self._check(arm, name, screening_ids)
        check["seats_in_two_201s"] = len(booked) - len(set(booked))
        check["bookings_201_vs_postgres"] = [bookings, in_pg]
        if check["seats_in_two_201s"] or bookings != in_pg:
            self.failures.append(f"{arm.label}/{name}: client-side check failed: {check}")
        return check

    def browse_alone(self, arm: Arm) -> dict[str, Any]:
        browse_id = asyncio.run(self._with_api(arm.url, self._full_screening))
        api_cpu, pg_cpu = CpuMeter(arm.api_pids), CpuMeter(self._pg_pids)
        readers = split(range(self.args.readers), self.args.load_procs)
        jobs = [
            (
                "browse",
                {
                    "url": arm.url,
                    "screening_id": browse_id,
                    "readers": len(part),
                    "seconds": self.args.browse_seconds,
                },
            )
            for part in readers
        ]
        results = [
            r for _, r in run_children(jobs, on_start=lambda: (api_cpu.start(), pg_cpu.start()))
        ]
        summary = self._browse_summary("browse", results)
        n = max(1, summary["requests"])
        summary["api_cpu_ms_per_request"] = round(api_cpu.stop() * 1000 / n, 3)
        summary["pg_cpu_ms_per_request"] = round(pg_cpu.stop() * 1000 / n, 3)
        summary["check"] = self._check(arm, "browse", [browse_id])
        return summary

    def _browse_summary(self, name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
        statuses: Counter[int] = Counter()
        for r in results:
            statuses.update({int(k): v for k, v in r["statuses"].items()})
        latencies = [x for r in results for x in r["latencies"]]
        duration = max(r["ended"] for r in results) - min(r["started"] for r in results)
        requests = sum(statuses.values())
        return {
            "scenario": name,
            "seats_in_map": self.args.browse_seats,
            "readers": self.args.readers,
            "duration_s": round(duration, 3),
            "requests": requests,
            "requests_per_s": round(requests / duration, 1) if duration > 0 else None,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "latency_ms": percentiles(latencies),
            "cdf_ms": cdf_points(latencies),
        }

    async def _full_screening(self, api: Api) -> int:
        """A screening whose every seat is held: the heaviest seat map to read."""
        screening_id, seats = await new_screening(api, self.fixture, "browse")
        tokens = self.fixture.tokens
        chunks = [
            seats[i : i + MAX_SEATS_PER_BOOKING]
            for i in range(0, len(seats), MAX_SEATS_PER_BOOKING)
        ]
        await asyncio.gather(
            *(
                api.ok(
                    "POST",
                    "/api/bookings/",
                    {"screening_id": screening_id, "seat_ids": chunk},
                    tokens[i % len(tokens)],
                    want=201,
                )
                for i, chunk in enumerate(chunks)
            )
        )
        await warm(api, screening_id)
        return screening_id

    def _pg_pids(self) -> list[int]:
        return asyncio.run(self.pg.backend_pids())

    def arm(self, arm: Arm) -> dict[str, Any]:
        wanted = set(self.args.scenarios.split(","))
        scenarios: dict[str, Any] = {}
        setup_peak = {str(p): memory_kb(p).get("VmHWM", 0) for p in arm.api_pids()}
        for pid in arm.api_pids() + arm.worker_pids():
            reset_peak_rss(pid)
        if "hot" in wanted:
            scenarios["hot"] = self._report(arm, self.hot(arm))
        if "onsale" in wanted:
            scenarios["onsale"] = self._report(arm, self.onsale(arm, 1, with_browse=False))
        if "onsale4" in wanted:
            scenarios["onsale4"] = self._report(
                arm, self.onsale(arm, 4, with_browse="browse" in wanted)
            )
        if "browse" in wanted:
            scenarios["browse"] = self._report(arm, self.browse_alone(arm))
        memory = {str(p): memory_kb(p) for p in arm.api_pids()}
        workers = {str(p): memory_kb(p) for p in arm.worker_pids()}
        rss = {
            "api_peak_rss_mb": {p: round(m.get("VmHWM", 0) / 1024, 1) for p, m in memory.items()},
            "api_rss_at_end_mb": {p: round(m.get("VmRSS", 0) / 1024, 1) for p, m in memory.items()},
            "api_peak_rss_during_setup_mb": {p: round(v / 1024, 1) for p, v in setup_peak.items()},
            "rss_note": "peak RSS is reset after setup (argon2 logins use 64 MiB per hash)",
            "worker_peak_rss_mb": (
                {p: round(m.get("VmHWM", 0) / 1024, 1) for p, m in workers.items()}
                if workers
                else "no worker running"
            ),
        }
        print(json.dumps({"arm": arm.label, **rss}), flush=True)
        return {"label": arm.label, "scenarios": scenarios, **rss}

    def _report(self, arm: Arm, summary: dict[str, Any]) -> dict[str, Any]:
        printable = {k: v for k, v in summary.items() if k != "cdf_ms"}
        if "browse" in printable:
            printable["browse"] = {k: v for k, v in summary["browse"].items() if k != "cdf_ms"}
        print(json.dumps({"arm": arm.label, **printable}), flush=True)
        return summary


def sales_summary(sales: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates, statuses and latencies (overall and by status) of the onsale processes' reports."""
    statuses: Counter[int] = Counter()
    for r in sales:
        statuses.update({int(k): v for k, v in r["statuses"].items()})
    duration = max(r["ended"] for r in sales) - min(r["started"] for r in sales)
    requests = sum(statuses.values())
    seats_booked = sum(len(b) for r in sales for b in r["booked"])
    by_status: dict[int, list[float]] = {code: [] for code in statuses}
    for r in sales:
        for code, latency in zip(r["codes"], r["latencies"], strict=True):
            if code in by_status:
                by_status[code].append(latency)
    return {
        "duration_s": round(duration, 3),
        "requests": requests,
        "requests_per_s": round(requests / duration, 1),
        "bookings": statuses.get(201, 0),
        "bookings_per_s": round(statuses.get(201, 0) / duration, 1),
        "seats_per_s": round(seats_booked / duration, 1),
        "conflicts": statuses.get(409, 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": [e for r in sales for e in r["errors"]][:5],
        "latency_ms": percentiles([x for r in sales for x in r["latencies"]]),
        "latency_ms_by_status": {
            str(code): percentiles(by_status[code]) for code in sorted(by_status)
        },
    }


def _parts(total: int, parts: int) -> list[int]:
    """`total` split into at most `parts` non-empty, nearly equal sizes."""
    base, extra = divmod(total, parts)
    sizes = [base + (1 if i < extra else 0) for i in range(parts)]
    return [n for n in sizes if n > 0]


# --- orchestration ---------------------------------------------------------------------------
def parse_compare(text: str | None) -> list[tuple[str, dict[str, str]]]:
    if not text:
        return [("filter=on", {"HOLD_FILTER": "on"})]
    arms = []
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if key != "filter" or value not in ("on", "off"):
            raise SystemExit(f"--compare understands filter=on and filter=off, not {item!r}")
        arms.append((f"filter={value}", {"HOLD_FILTER": value}))
    return arms


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="drive a running server at this URL")
    target.add_argument("--spawn", action="store_true", help="start our own server (free port)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cinema"),
        help="with --url: the server's database; with --spawn: where to create cinema_bench_*",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--compare", help="e.g. filter=on,filter=off (needs --spawn)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the arms this many times")
    parser.add_argument("--workers", type=int, default=2, help="API processes with --spawn")
    parser.add_argument(
        "--db-pool-max",
        type=int,
        default=16,
        help="with --spawn: DB_POOL_MAX per API process (PostgreSQL allows 100 connections)",
    )
    parser.add_argument("--clients", type=int, default=1000, help="hot seat: concurrent clients")
    parser.add_argument("--users", type=int, default=200, help="onsale: concurrent users")
    parser.add_argument("--seats", type=int, default=2000, help="onsale: seats in the hall")
    parser.add_argument("--browse-seats", type=int, default=500, help="browse: seats in the map")
    parser.add_argument("--readers", type=int, default=16, help="browse: concurrent readers")
    parser.add_argument("--browse-seconds", type=float, default=5.0, help="browse alone: length")
    parser.add_argument("--load-procs", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--scenarios", default="hot,onsale,onsale4,browse", help="comma-separated subset"
    )
    parser.add_argument(
        "--stats-settle",
        type=float,
        default=PG_IDLE_FLUSH_SECONDS,
        help="seconds to wait for PostgreSQL's idle backends to flush their counters (0: skip)",
    )
    parser.add_argument("--api-pids", help="with --url: comma-separated API process ids")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--worker",
        choices=["auto", "no"],
        default="auto",
        help="with --spawn: also run `cinema worker` if the CLI has it",
    )
    return parser


def _spawn_env(args: argparse.Namespace, dsn: str, tag: str) -> dict[str, str]:
    """Settings for our own server: its own database and Redis prefix, no payments, no mail."""
    return {
        "DATABASE_URL": dsn,
        "REDIS_URL": args.redis_url,
        "REDIS_KEY_PREFIX": f"cinemabench:{tag}:",
        "JWT_SECRET": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "DB_POOL_MAX": str(args.db_pool_max),
        # The limiter still runs (its Redis call is part of a booking's cost), but the
        # benchmark's users book far faster than a person and must not be turned away.
        "RATE_LIMIT_BOOKINGS_PER_MINUTE": "1000000",
        "RATE_LIMIT_AUTH_PER_MINUTE": "1000000",
        # No payment provider: a booking is the hold alone (with a Stripe key every
        # booking would also create a payment intent, which is not what this measures).
        "STRIPE_SECRET_KEY": "",
        "SMTP_HOST": "",
        # The worker's reconciler would add its own transactions to the hot seat's count;
        # it sweeps at start-up and then hourly (no hold falls due during a run anyway).
        "EXPIRY_RECONCILE_SECONDS": "3600",
    }


def _environment(args: argparse.Namespace, tag: str) -> tuple[str, dict[str, str]]:
    """The database the run measures and the environment its server processes get."""
    env = dict(os.environ)
    env.pop("HOLD_FILTER", None)
    if args.spawn:
        dsn = with_database(args.database_url, f"cinema_bench_{tag}")
        env.update(_spawn_env(args, dsn, tag))
    else:
        dsn = args.database_url
        env.update(DATABASE_URL=dsn, JWT_SECRET=env.get("JWT_SECRET") or secrets.token_urlsafe(48))
    return dsn, env


def _run_arm(
    args: argparse.Namespace,
    env: dict[str, str],
    label: str,
    overrides: dict[str, str],
    log_path: Path,
    start: Callable[[Arm], dict[str, Any]],
) -> dict[str, Any]:
    """One arm: (with --spawn) a server started with the arm's settings, measured, stopped."""
    if not args.spawn:
        pids = [int(p) for p in (args.api_pids or "").split(",") if p]
        return start(Arm(label, args.url, lambda: pids, lambda: []))
    with_worker = args.worker == "auto" and cli_has_command(env, "worker")
    server = SpawnedServer({**env, **overrides}, args.workers, log_path)
    log(f"starting {label} on {server.url}")
    try:
        server.start(with_worker)
        return start(Arm(label, server.url, server.api_pids, server.worker_pids))
    finally:
        server.stop()


def _run_arms(
    args: argparse.Namespace, env: dict[str, str], pg: Postgres, log_path: Path
) -> tuple[Run | None, list[dict[str, Any]]]:
    """Every arm of --compare, --rounds times, alternating; the fixture is made on the first."""
    run: Run | None = None
    arms: list[dict[str, Any]] = []

    def measure(arm: Arm) -> dict[str, Any]:
        nonlocal run
        if run is None:
            run = Run(args, pg, asyncio.run(create_fixture(arm.url, pg, env, args)))
        return run.arm(arm)

    for round_no in range(args.rounds):
        for label, overrides in parse_compare(args.compare):
            log(f"round {round_no + 1}: {label}")
            report = _run_arm(args, env, label, overrides, log_path, measure)
            report["round"] = round_no + 1
            arms.append(report)
    return run, arms


def _write_results(
    args: argparse.Namespace,
    result: dict[str, Any],
    run: Run | None,
    arms: list[dict[str, Any]],
    stem: Path,
) -> int:
    by_label: dict[str, list[dict[str, Any]]] = {}
    for a in arms:
        by_label.setdefault(a["label"], []).append(a)
    result["arms"] = arms
    result["ratios"] = ratios(by_label)
    result["failures"] = run.failures if run else ["no run"]
    result["loadavg_at_end"] = os.getloadavg()
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print()
    print(tables(arms))
    if result["ratios"]:
        print(json.dumps({"ratios": result["ratios"]}, indent=1))
    if not args.no_chart and chart(arms, stem.with_suffix(".png")):
        log(f"chart: {stem.with_suffix('.png')}")
    log(f"results: {stem.with_suffix('.json')}")
    for failure in result["failures"]:
        log(f"FAILED: {failure}")
    return 1 if result["failures"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare and not args.spawn:
        parser.error("--compare restarts the server with other settings: use it with --spawn")
    args.load_procs = max(1, min(args.load_procs, args.users))
    parse_compare(args.compare)  # a malformed --compare fails before anything starts

    started_at = datetime.now(UTC)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_dir / f"onsale-{started_at.strftime('%Y%m%dT%H%M%SZ')}"
    tag = secrets.token_hex(4)
    dsn, env = _environment(args, tag)
    result: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "results_dir"},
        "note": "2 cores shared by server, PostgreSQL, Redis and load generator",
        "database": database_name(dsn),
    }
    try:
        if args.spawn:
            log(f"database {database_name(dsn)}, redis prefix cinemabench:{tag}:")
            run_cinema(env, "migrate")
        run, arms = _run_arms(args, env, Postgres(dsn), stem.with_suffix(".server.log"))
    finally:
        if args.spawn:
            _cleanup(args, dsn, env["REDIS_KEY_PREFIX"])
    return _write_results(args, result, run, arms, stem)


def _cleanup(args: argparse.Namespace, dsn: str, prefix: str) -> None:
    async def drop() -> None:
        admin = await asyncpg.connect(with_database(dsn, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database_name(dsn)}" WITH (FORCE)')
        finally:
            await admin.close()

    try:
        asyncio.run(drop())
    except Exception as exc:
        log(f"could not drop {database_name(dsn)}: {exc}")
    try:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        client.close()
    except Exception as exc:
        log(f"could not clean redis prefix {prefix}: {exc}")


if __name__ == "__main__":
    raise SystemExit(main())
