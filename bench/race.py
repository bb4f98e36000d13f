#!/usr/bin/env python3
"""The simplest proof: N threads try to book the same seat at the same instant.

Runs against any CinemaCore server with nothing but the standard library:

    python bench/race.py --url http://127.0.0.1:8000 --threads 10

It registers users, creates a screening (with the staff account from `cinema demo`, or the
one you name) or uses --screening, releases every thread at once through a barrier, prints
each outcome and a final line like `1 succeeded, 9 failed`. Exits 1 if more than one
succeeded (a double booking), 2 if a request failed in an unexpected way.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any


class Api:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw)
            except ValueError:
                return error.code, raw.decode(errors="replace")

    def login(self, email: str, password: str) -> str:
        status, body = self.call("POST", "/api/auth/token", {"email": email, "password": password})
        if status != 200:
            raise SystemExit(f"login as {email} failed: {status} {body}")
        return str(body["access_token"])

    def new_user(self) -> str:
        email = f"racer-{secrets.token_hex(6)}@example.com"
        password = secrets.token_urlsafe(12)
        status, body = self.call(
            "POST", "/api/auth/register", {"email": email, "password": password}
        )
        if status != 201:
            raise SystemExit(f"register failed: {status} {body}")
        return self.login(email, password)

    def new_screening(self, staff_token: str) -> int:
        def created(path: str, body: dict[str, Any]) -> dict[str, Any]:
            status, reply = self.call("POST", path, body, staff_token)
            if status != 201:
                raise SystemExit(f"POST {path} failed: {status} {reply}")
            return dict(reply)

        movie = created("/api/admin/movies/", {"title": "Race", "duration_minutes": 90})
        hall = created(
            "/api/admin/halls/",
            {"name": "Race hall", "layout": {"rows": [{"label": "A", "seats": 10}]}},
        )
        screening = created(
            "/api/admin/screenings/",
            {
                "movie_id": movie["id"],
                "hall_id": hall["id"],
                "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                "prices": {"standard": "10.00"},
                "currency": "usd",
            },
        )
        return int(screening["id"])

    def free_seat(self, screening_id: int) -> int:
        status, body = self.call("GET", f"/api/screenings/{screening_id}/seats/")
        if status != 200:
            raise SystemExit(f"seat map failed: {status} {body}")
        for seat in body["seats"]:
            if seat["status"] == "AVAILABLE":
                return int(seat["id"])
        raise SystemExit(f"screening {screening_id} has no free seat")


STATS_FLUSH_SECONDS = 11  # PostgreSQL 15 backends publish their counters within ~10 s of idling


def transactions(dsn: str) -> int:
    """xact_commit + xact_rollback of the database, read with psql, after the counters settle."""
    time.sleep(STATS_FLUSH_SECONDS)
    query = (
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    out = subprocess.run(["psql", dsn, "-Atc", query], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def percentile(values: list[float], p: float) -> float:
    # Nearest rank, the one definition of bench/common.py (this file imports nothing from bench
    # so that it stays standard-library only): the ceil(p/100 * n)-th smallest value.
    ordered = sorted(values)
    rank = math.ceil(p * len(ordered) / 100 - 1e-9)
    return ordered[min(len(ordered) - 1, max(0, rank - 1))]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--threads", "-n", type=int, default=10)
    parser.add_argument("--users", type=int, help="distinct users (default: one per thread)")
    parser.add_argument("--screening", type=int, help="use this screening instead of creating one")
    parser.add_argument("--seat", type=int, help="seat id to fight over (default: first free)")
    parser.add_argument("--staff-email", default="staff@cinema.example")
    parser.add_argument("--staff-password", default="staff-password")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--pg-dsn",
        help="count the PostgreSQL transactions the burst caused (needs psql; adds ~35 s)",
    )
    return parser


Result = tuple[int, int, Any, float]  # thread, HTTP status, body, seconds


def burst(api: Api, screening_id: int, seat: int, tokens: list[str], threads: int) -> list[Result]:
    """`threads` threads released by one barrier, each booking the same seat."""
    barrier = threading.Barrier(threads)
    results: list[Result] = [(0, 0, None, 0.0)] * threads
    body = {"screening_id": screening_id, "seat_ids": [seat]}

    def attempt(i: int) -> None:
        token = tokens[i % len(tokens)]
        barrier.wait()
        started = time.perf_counter()
        status, reply = api.call("POST", "/api/bookings/", body, token)
        results[i] = (i, status, reply, time.perf_counter() - started)

    workers = [threading.Thread(target=attempt, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return results


def _print_answers(results: list[Result]) -> None:
    for i, status, body, seconds in results:
        outcome = (
            f"booking {body['reference']}"
            if status == 201
            else (body["error"]["code"] if isinstance(body, dict) and "error" in body else body)
        )
        print(f"thread {i:4d}: {status} {outcome} ({seconds * 1000:.1f} ms)")


def main() -> int:
    args = _parser().parse_args()
    api = Api(args.url)
    screening_id = args.screening or api.new_screening(
        api.login(args.staff_email, args.staff_password)
    )
    seat = args.seat or api.free_seat(screening_id)
    user_count = max(1, min(args.users or args.threads, args.threads))
    with ThreadPoolExecutor(max_workers=min(32, user_count)) as pool:
        tokens = list(pool.map(lambda _: api.new_user(), range(user_count)))
    print(f"screening {screening_id}, seat {seat}: {args.threads} threads, {user_count} users")

    # Warm every API process's screening cache, so the burst measures bookings alone.
    for _ in range(20):
        api.call("GET", f"/api/screenings/{screening_id}/seats/")
    before = overhead = 0
    if args.pg_dsn:
        # Two readings with nothing in between measure what reading itself costs (the psql
        # session's own start-up and query are transactions too).
        first = transactions(args.pg_dsn)
        before = transactions(args.pg_dsn)
        overhead = before - first

    results = burst(api, screening_id, seat, tokens, args.threads)
    succeeded = [r for r in results if r[1] == 201]
    conflicts = [r for r in results if r[1] == 409]
    unexpected = [r for r in results if r[1] not in (201, 409)]
    if not args.quiet:
        _print_answers(results)
    latencies = [r[3] * 1000 for r in results]
    print(
        f"latency ms: p50 {percentile(latencies, 50):.1f}, p99 {percentile(latencies, 99):.1f}, "
        f"max {max(latencies):.1f}, mean {statistics.fmean(latencies):.1f}"
    )
    if args.pg_dsn:
        caused = transactions(args.pg_dsn) - before - overhead
        print(f"PostgreSQL transactions during the burst: {caused}")
    if unexpected:
        print(f"unexpected answers: {sorted({r[1] for r in unexpected})}")
    print(f"{len(succeeded)} succeeded, {len(conflicts) + len(unexpected)} failed")
    if len(succeeded) > 1:
        return 1
    return 2 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
