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
  ga       (only when named) general admission, 5,000 places, U users 1-4 places a request
           until sold out, then a losers' burst: tickets/s, latency, PG transactions per loser.
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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

if __package__ in (None, ""):  # run as `python bench/onsale.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PASSWORD,
    ROOT,
    Api,
    SpawnedServer,
    cli_has_command,
    database_name,
    hall_layout,
    log,
    memory_kb,
    reset_peak_rss,
    with_database,
)
from bench.onsale_report import chart, machine, ratios, tables
from bench.scenarios.base import PG_IDLE_FLUSH_SECONDS, Arm, Fixture, Postgres
from bench.scenarios.ga import GeneralAdmission
from bench.scenarios.hot import HotSeat
from bench.scenarios.logins import Logins
from bench.scenarios.openloop import OpenLoop

DEFAULT_RESULTS = ROOT / "bench" / "results"


# --- PostgreSQL: transaction counters, backends, double-booking check ----------------------


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
        for name, seats in (
            ("hot", 10),
            ("onsale", args.seats),
            ("browse", args.browse_seats),
            ("openloop", args.open_seats),
            ("uncontended", args.uncontended_seats),
        ):
            hall = await api.ok(
                "POST",
                "/api/admin/halls/",
                {"name": f"bench {name}", "layout": hall_layout(seats)},
                staff,
                want=201,
            )
            halls[name] = hall["id"]
    return Fixture(staff, tokens, movie["id"], halls, emails)


# --- scenarios -------------------------------------------------------------------------------


class Run(HotSeat, Logins, OpenLoop, GeneralAdmission):
    """Every scenario against one arm after the other."""

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
        if "uncontended" in wanted:
            scenarios["uncontended"] = self._report(arm, self.onsale(arm, 1, False, True))
        if "openloop" in wanted:
            scenarios["openloop"] = self._report(arm, self.openloop(arm))
        if "logins" in wanted:
            scenarios["logins"] = self._report(arm, self.logins(arm))
        if "ga" in wanted:  # bench/scenarios/ga.py; not in the default set
            scenarios["ga"] = self._report(arm, self.ga(arm))
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


# --- orchestration ---------------------------------------------------------------------------
# The arms --compare knows: name=value -> the server's settings in that arm. redis=cluster
# and db=pgbouncer need the servers bench/scale.py starts and names in BENCH_CLUSTER_URL
# (a start-up node) and BENCH_PGBOUNCER (host:port in front of --database-url's server).
ARMS: dict[str, dict[str, dict[str, str]]] = {
    "filter": {"on": {"HOLD_FILTER": "on"}, "off": {"HOLD_FILTER": "off"}},
    "redis": {
        "single": {},
        "cluster": {"REDIS_CLUSTER": "1", "REDIS_URL": "$BENCH_CLUSTER_URL"},
    },
    "db": {
        "direct": {},
        "nocache": {"DB_STATEMENT_CACHE_SIZE": "0"},
        "pgbouncer": {"DB_STATEMENT_CACHE_SIZE": "0", "DATABASE_URL": "$BENCH_PGBOUNCER"},
    },
}


def parse_compare(text: str | None) -> list[tuple[str, dict[str, str]]]:
    if not text:
        return [("filter=on", {"HOLD_FILTER": "on"})]
    arms = []
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if value not in ARMS.get(key, {}):
            known = ", ".join(f"{k}={v}" for k, vs in ARMS.items() for v in vs)
            raise SystemExit(f"--compare understands {known}; not {item!r}")
        arms.append((f"{key}={value}", dict(ARMS[key][value])))
    return arms


def resolve_arm(overrides: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """Fill in the servers bench/scale.py started ($BENCH_...)."""
    resolved = dict(overrides)
    if resolved.get("REDIS_URL") == "$BENCH_CLUSTER_URL":
        resolved["REDIS_URL"] = os.environ["BENCH_CLUSTER_URL"]
    if resolved.get("DATABASE_URL") == "$BENCH_PGBOUNCER":
        parts = urlsplit(env["DATABASE_URL"])
        netloc = f"{parts.username or 'postgres'}@{os.environ['BENCH_PGBOUNCER']}"
        resolved["DATABASE_URL"] = urlunsplit(parts._replace(netloc=netloc))
    return resolved


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
    parser.add_argument("--ga-capacity", type=int, default=5000, help="ga: places to sell")
    parser.add_argument("--browse-seconds", type=float, default=5.0, help="browse alone: length")
    parser.add_argument("--load-procs", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--uncontended-seats",
        type=int,
        default=5000,
        help="uncontended: seats in the hall, split among the users (nobody meets anybody)",
    )
    parser.add_argument(
        "--scenarios",
        default="hot,onsale,onsale4,browse",
        help="comma-separated subset of hot,onsale,onsale4,browse,uncontended,openloop,logins",
    )
    parser.add_argument("--logins", type=int, default=200, help="logins: the burst's size")
    parser.add_argument(
        "--open-loop", action="store_true", help="run the openloop scenario alone (--rates)"
    )
    parser.add_argument(
        "--rates", default="250,500,1000,1500", help="openloop: arrival rates, requests/s"
    )
    parser.add_argument("--open-seconds", type=float, default=5.0, help="openloop: per rate")
    parser.add_argument("--open-seats", type=int, default=2000, help="openloop: seats per rate")
    parser.add_argument(
        "--open-connections",
        type=int,
        default=128,
        help="openloop: connections each load process opens first (more open when needed)",
    )
    parser.add_argument(
        "--stage-timings",
        action="store_true",
        help="with --spawn: STAGE_TIMINGS=1, and onsale reports each stage of 201s and 409s",
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
        "STAGE_TIMINGS": "1" if args.stage_timings else "0",
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
    server = SpawnedServer({**env, **resolve_arm(overrides, env)}, args.workers, log_path)
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
    if args.open_loop:
        args.scenarios = "openloop"
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
