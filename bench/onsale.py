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
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "bench" / "results"
PASSWORD = "bench-password-1"
SEATS_PER_ROW = 50
MAX_SEATS_PER_BOOKING = 10  # the API's limit, used to fill the browse screening quickly
CLK_TCK = os.sysconf("SC_CLK_TCK")
PG_IDLE_FLUSH_SECONDS = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) + a margin


# --- small helpers ----------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[onsale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    if not latencies_ms:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(latencies_ms)

    def at(q: float) -> float:
        index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return round(ordered[index], 2)

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 2),
        "mean": round(sum(ordered) / len(ordered), 2),
    }


def cdf_points(latencies_ms: Sequence[float], points: int = 100) -> list[float]:
    """Latency at 1%, 2% ... 100%: enough to redraw the distribution from the JSON alone."""
    if not latencies_ms:
        return []
    ordered = sorted(latencies_ms)
    return [
        round(ordered[min(len(ordered) - 1, math.ceil(len(ordered) * i / points) - 1)], 2)
        for i in range(1, points + 1)
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


# --- /proc: CPU and memory of the processes we measure -------------------------------------
def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


def memory_kb(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs), so setup logins do not count."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return sorted(kids)


@dataclass
class CpuMeter:
    """CPU seconds used by a set of processes between start() and stop()."""

    pids: Callable[[], Iterable[int]]
    before: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self.before = {p: c for p in self.pids() if (c := cpu_seconds(p)) is not None}

    def stop(self) -> float:
        total = 0.0
        for pid in set(self.pids()) | set(self.before):
            now = cpu_seconds(pid)
            if now is not None:
                total += now - self.before.get(pid, 0.0)
        return round(total, 3)


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


# --- the server under test -----------------------------------------------------------------
class SpawnedServer:
    """`cinema migrate` + `cinema serve --workers N` on a free port, with its own settings."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.worker_proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def command(*args: str) -> list[str]:
        return [sys.executable, "-m", "cinema", *args]

    def start(self, with_worker: bool) -> None:
        logfile = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ),
            env=self.env,
            cwd=ROOT,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if with_worker:
            self.worker_proc = subprocess.Popen(
                self.command("worker"),
                env=self.env,
                cwd=ROOT,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if self.workers <= 1 or len(children_of(self.proc.pid)) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not listen within 60 s; see {self.log_path}")

    def api_pids(self) -> list[int]:
        if self.proc is None:
            return []
        kids = children_of(self.proc.pid)
        return kids if self.workers > 1 and kids else [self.proc.pid]

    def worker_pids(self) -> list[int]:
        if self.worker_proc is None or self.worker_proc.poll() is not None:
            return []
        return [self.worker_proc.pid, *children_of(self.worker_proc.pid)]

    def stop(self) -> None:
        for proc in (self.proc, self.worker_proc):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session, started above
                proc.wait(timeout=10)


def cli_has_command(env: dict[str, str], name: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "cinema", "--help"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return name in out.split("{", 1)[-1].split("}", 1)[0].split(",")


# --- the API as the benchmark uses it --------------------------------------------------------
class Api:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            return resp.status, (orjson.loads(raw) if raw else None)

    async def ok(
        self, method: str, path: str, body: Any = None, token: str | None = None, want: int = 200
    ) -> Any:
        status, reply = await self.call(method, path, body, token)
        if status != want:
            raise RuntimeError(f"{method} {path} answered {status}: {reply}")
        return reply

    async def token(self, email: str) -> str:
        reply = await self.ok("POST", "/api/auth/token", {"email": email, "password": PASSWORD})
        return str(reply["access_token"])

    async def seat_ids(self, screening_id: int) -> list[int]:
        reply = await self.ok("GET", f"/api/screenings/{screening_id}/seats/")
        return [s["id"] for s in reply["seats"]]

    async def seat_counts(self, screening_id: int) -> dict[str, int]:
        reply = await self.ok("GET", f"/api/screenings/{screening_id}/seats/")
        return dict(reply["counts"])


def hall_layout(seats: int) -> dict[str, Any]:
    rows = []
    left, index = seats, 0
    while left > 0:
        rows.append({"label": f"R{index + 1}", "seats": min(SEATS_PER_ROW, left)})
        left -= SEATS_PER_ROW
        index += 1
    return {"rows": rows}


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


# --- load generator processes ----------------------------------------------------------------
def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=60),
        skip_auto_headers=("User-Agent",),
    )


async def _preconnect(session: aiohttp.ClientSession, url: str, count: int) -> None:
    async def one() -> None:
        async with session.get(url + "/health") as resp:
            await resp.read()

    await asyncio.gather(*(one() for _ in range(count)))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def _hot_child(spec: dict[str, Any], barrier: Any) -> dict[str, Any]:
    url, clients = spec["url"], spec["clients"]
    body = orjson.dumps({"screening_id": spec["screening_id"], "seat_ids": [spec["seat_id"]]})
    headers = [_auth(t) for t in spec["tokens"]]
    results: list[tuple[int, float, float]] = []
    async with _session(clients) as session:
        await _preconnect(session, url, clients)
        gate = asyncio.Event()

        async def client(h: dict[str, str]) -> None:
            await gate.wait()
            started = time.perf_counter()
            async with session.post(url + "/api/bookings/", data=body, headers=h) as resp:
                await resp.read()
                done = time.perf_counter()
                results.append((resp.status, (done - started) * 1000, done))

        tasks = [asyncio.create_task(client(headers[i % len(headers)])) for i in range(clients)]
        await asyncio.sleep(0)  # every client is parked on the gate
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        released = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
    return {
        "statuses": [r[0] for r in results],
        "latencies": [r[1] for r in results],
        "burst_ms": (max(r[2] for r in results) - released) * 1000 if results else 0.0,
    }


class FreeSeats:
    """The seats this process believes are free: O(1) remove and random pick."""

    def __init__(self, seat_ids: Iterable[int]) -> None:
        self.items = list(seat_ids)
        self.index = {s: i for i, s in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def remove(self, seat: int) -> None:
        i = self.index.pop(seat, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def pick(self, count: int) -> list[int]:
        return random.sample(self.items, min(count, len(self.items)))


async def _onsale_child(spec: dict[str, Any], barrier: Any) -> dict[str, Any]:
    url, screening_id, max_seats = spec["url"], spec["screening_id"], spec["max_seats"]
    free = FreeSeats(spec["seat_ids"])
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    booked: list[list[int]] = []
    codes: list[int] = []
    errors: list[str] = []
    async with _session(len(spec["tokens"])) as session:
        await _preconnect(session, url, len(spec["tokens"]))

        async def user(token: str) -> None:
            h = _auth(token)
            while free and len(errors) < 50:
                seats = free.pick(random.randint(1, max_seats))
                body = orjson.dumps({"screening_id": screening_id, "seat_ids": seats})
                started = time.perf_counter()
                async with session.post(url + "/api/bookings/", data=body, headers=h) as resp:
                    raw = await resp.read()
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses[resp.status] += 1
                    codes.append(resp.status)
                if resp.status == 201:
                    booked.append(seats)
                    for s in seats:
                        free.remove(s)
                elif resp.status == 409:
                    taken = orjson.loads(raw)["error"].get("seat_ids") or seats
                    for s in taken:
                        free.remove(s)
                else:
                    errors.append(f"{resp.status} {raw[:200]!r}")

        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        started = time.time()
        await asyncio.gather(*(user(t) for t in spec["tokens"]))
        ended = time.time()
    return {
        "statuses": dict(statuses),
        "latencies": latencies,
        "codes": codes,
        "booked": booked,
        "errors": errors[:5],
        "started": started,
        "ended": ended,
    }


async def _browse_child(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    url = f"{spec['url']}/api/screenings/{spec['screening_id']}/seats/"
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline_s = spec.get("seconds")
    async with _session(spec["readers"]) as session:
        await _preconnect(session, spec["url"], spec["readers"])
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        started = time.time()
        deadline = started + deadline_s if deadline_s else None

        async def reader() -> None:
            while not stop.is_set() and (deadline is None or time.time() < deadline):
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    latencies.append((time.perf_counter() - t0) * 1000)
                    statuses[resp.status] += 1

        await asyncio.gather(*(reader() for _ in range(spec["readers"])))
        ended = time.time()
    return {"statuses": dict(statuses), "latencies": latencies, "started": started, "ended": ended}


def _child_main(kind: str, spec: dict[str, Any], barrier: Any, stop: Any, out: Any) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    cpu0 = time.process_time()
    try:
        if kind == "hot":
            result = asyncio.run(_hot_child(spec, barrier))
        elif kind == "onsale":
            result = asyncio.run(_onsale_child(spec, barrier))
        else:
            result = asyncio.run(_browse_child(spec, barrier, stop))
        result["cpu_s"] = time.process_time() - cpu0
        out.put((kind, result))
    except BaseException as exc:
        barrier.abort()
        out.put((kind, {"crash": repr(exc)}))


def run_children(
    jobs: list[tuple[str, dict[str, Any]]],
    stop_after: set[str] | None = None,
    on_start: Callable[[], None] | None = None,
) -> Any:
    """Run each (kind, spec) in its own process; all start together through one barrier,
    once every process has opened its connections, and `on_start` runs at that moment (so
    CPU meters see the load, not the connecting). Kinds in `stop_after` must finish before
    the others are told to stop (browse readers run until the onsale is over). Returns a
    list of (kind, result)."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(jobs) + 1)
    stop = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_child_main, args=(kind, spec, barrier, stop, out))
        for kind, spec in jobs
    ]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=600)
    except threading.BrokenBarrierError:
        pass  # a child failed before the start; its report says why
    else:
        if on_start is not None:
            on_start()
    results: list[tuple[str, dict[str, Any]]] = []
    waiting_for = sum(1 for kind, _ in jobs if stop_after is None or kind in stop_after)
    while len(results) < len(jobs):
        kind, result = out.get(timeout=600)
        results.append((kind, result))
        if "crash" in result:
            stop.set()
        if stop_after is None or kind in stop_after:
            waiting_for -= 1
            if waiting_for == 0:
                stop.set()
    for proc in procs:
        proc.join(timeout=30)
    crashed = [r["crash"] for _, r in results if "crash" in r]
    if crashed:
        raise RuntimeError(f"a load process failed: {crashed[0]}")
    return results


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    return [list(items[i::parts]) for i in range(parts) if items[i::parts]]


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
        args = self.args
        name = "onsale" if max_seats == 1 else f"onsale{max_seats}"

        async def prepare(api: Api) -> tuple[int, list[int], int | None]:
            screening_id, seats = await new_screening(api, self.fixture, "onsale")
            await warm(api, screening_id)
            browse_id = await self._full_screening(api) if with_browse else None
            return screening_id, seats, browse_id

        screening_id, seats, browse_id = asyncio.run(self._with_api(arm.url, prepare))
        jobs: list[tuple[str, dict[str, Any]]] = [
            (
                "onsale",
                {
                    "url": arm.url,
                    "screening_id": screening_id,
                    "seat_ids": seats,
                    "tokens": part,
                    "max_seats": max_seats,
                },
            )
            for part in split(self.fixture.tokens, args.load_procs)
        ]
        if browse_id is not None:
            jobs.append(
                ("browse", {"url": arm.url, "screening_id": browse_id, "readers": args.readers})
            )
        api_cpu, pg_cpu = CpuMeter(arm.api_pids), CpuMeter(self._pg_pids)
        results = run_children(
            jobs, stop_after={"onsale"}, on_start=lambda: (api_cpu.start(), pg_cpu.start())
        )
        api_cpu_s, pg_cpu_s = api_cpu.stop(), pg_cpu.stop()
        sales = [r for k, r in results if k == "onsale"]
        statuses = Counter()
        for r in sales:
            statuses.update({int(k): v for k, v in r["statuses"].items()})
        latencies = [x for r in sales for x in r["latencies"]]
        duration = max(r["ended"] for r in sales) - min(r["started"] for r in sales)
        requests = sum(statuses.values())
        booked = [seat for r in sales for b in r["booked"] for seat in b]
        bookings = statuses.get(201, 0)
        counts = asyncio.run(self._with_api(arm.url, lambda api: api.seat_counts(screening_id)))
        in_pg = asyncio.run(self.pg.live_bookings(screening_id))
        check = self._check(arm, name, [screening_id] + ([browse_id] if browse_id else []))
        check["seats_in_two_201s"] = len(booked) - len(set(booked))
        check["bookings_201_vs_postgres"] = [bookings, in_pg]
        if check["seats_in_two_201s"] or bookings != in_pg:
            self.failures.append(f"{arm.label}/{name}: client-side check failed: {check}")
        summary: dict[str, Any] = {
            "scenario": name,
            "users": len(self.fixture.tokens),
            "seats": len(seats),
            "seats_per_request": f"1-{max_seats}" if max_seats > 1 else "1",
            "sold_out": counts.get("available", -1) == 0,
            "duration_s": round(duration, 3),
            "requests": requests,
            "requests_per_s": round(requests / duration, 1),
            "bookings": bookings,
            "bookings_per_s": round(bookings / duration, 1),
            "seats_per_s": round(len(booked) / duration, 1),
            "conflicts": statuses.get(409, 0),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": [e for r in sales for e in r["errors"]][:5],
            "latency_ms": percentiles(latencies),
            "latency_ms_by_status": {
                str(code): percentiles(
                    [
                        x
                        for r in sales
                        for c, x in zip(r["codes"], r["latencies"], strict=True)
                        if c == code
                    ]
                )
                for code in sorted(statuses)
            },
            "api_cpu_s": api_cpu_s,
            "pg_cpu_s": pg_cpu_s,
            "loadgen_cpu_s": round(sum(r["cpu_s"] for _, r in results), 2),
            "check": check,
            "cdf_ms": cdf_points(latencies),
        }
        browse = [r for k, r in results if k == "browse"]
        all_requests = requests + sum(sum(r["statuses"].values()) for r in browse)
        summary["api_cpu_ms_per_request"] = round(api_cpu_s * 1000 / max(1, all_requests), 3)
        summary["pg_cpu_ms_per_request"] = round(pg_cpu_s * 1000 / max(1, all_requests), 3)
        if browse:
            summary["cpu_note"] = "CPU per request counts the concurrent browse reads too"
            summary["browse"] = self._browse_summary("browse_during_" + name, browse)
        return summary

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


def _parts(total: int, parts: int) -> list[int]:
    """`total` split into at most `parts` non-empty, nearly equal sizes."""
    base, extra = divmod(total, parts)
    sizes = [base + (1 if i < extra else 0) for i in range(parts)]
    return [n for n in sizes if n > 0]


# --- tables, ratios and the chart ------------------------------------------------------------
TABLE_ROWS: dict[str, list[tuple[str, str]]] = {
    "hot": [
        ("201 (winners)", "winners"),
        ("409", "statuses.409"),
        ("p50 ms", "latency_ms.p50"),
        ("p95 ms", "latency_ms.p95"),
        ("p99 ms", "latency_ms.p99"),
        ("max ms", "latency_ms.max"),
        ("whole burst ms", "burst_ms"),
        ("PG transactions", "pg_transactions"),
        ("API CPU s", "api_cpu_s"),
        ("API CPU ms/request", "api_cpu_ms_per_request"),
        ("double-booked seats", "check.double_booked_seats"),
    ],
    "onsale": [
        ("requests/s", "requests_per_s"),
        ("bookings/s", "bookings_per_s"),
        ("seats/s", "seats_per_s"),
        ("requests", "requests"),
        ("conflicts (409)", "conflicts"),
        ("sold out", "sold_out"),
        ("duration s", "duration_s"),
        ("p50 ms", "latency_ms.p50"),
        ("p95 ms", "latency_ms.p95"),
        ("p99 ms", "latency_ms.p99"),
        ("max ms", "latency_ms.max"),
        ("p99 ms of 201s", "latency_ms_by_status.201.p99"),
        ("p99 ms of 409s", "latency_ms_by_status.409.p99"),
        ("API CPU ms/request", "api_cpu_ms_per_request"),
        ("PG CPU ms/request", "pg_cpu_ms_per_request"),
        ("double-booked seats", "check.double_booked_seats"),
    ],
    "browse": [
        ("requests/s", "requests_per_s"),
        ("p50 ms", "latency_ms.p50"),
        ("p99 ms", "latency_ms.p99"),
        ("max ms", "latency_ms.max"),
    ],
}


def dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def tables(arms: list[dict[str, Any]]) -> str:
    labels = [a["label"] for a in arms]
    names: list[str] = []
    for a in arms:
        for name, summary in a["scenarios"].items():
            if name not in names:
                names.append(name)
            if "browse" in summary and f"{name}+browse" not in names:
                names.append(f"{name}+browse")
    out = []
    for name in names:
        base, _, sub = name.partition("+")
        rows = TABLE_ROWS["browse" if sub or base == "browse" else base.rstrip("4")]
        picked = [
            (a["scenarios"].get(base, {}).get("browse") if sub else a["scenarios"].get(base))
            for a in arms
        ]
        title = f"browse during {base}" if sub else name
        header = ["", *labels] + (["ratio " + "/".join(labels[:2])] if len(labels) >= 2 else [])
        lines = [header]
        for text, path in rows:
            values = [dig(p, path) if p else None for p in picked]
            cells = [text, *["-" if v is None else str(v) for v in values]]
            if len(values) >= 2:
                cells.append(_ratio(values[0], values[1]))
            lines.append(cells)
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        out.append(f"== {title} ==")
        out.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines)
        out.append("")
    return "\n".join(out)


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, bool) or isinstance(b, bool):
        return "-"
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return f"{a / b:.2f}x"
    return "-"


def ratios(by_label: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean of each headline figure per arm label, then first label / second label."""
    labels = list(by_label)
    if len(labels) < 2:
        return {}
    headline = {
        "hot": ["latency_ms.p99", "pg_transactions", "api_cpu_s"],
        "onsale": [
            "requests_per_s",
            "bookings_per_s",
            "latency_ms.p99",
            "api_cpu_ms_per_request",
            "pg_cpu_ms_per_request",
        ],
        "onsale4": ["requests_per_s", "bookings_per_s", "latency_ms.p99", "pg_cpu_ms_per_request"],
        "browse": ["requests_per_s", "latency_ms.p99"],
    }
    out: dict[str, Any] = {}
    for scenario, paths in headline.items():
        for path in paths:
            means = []
            for label in labels[:2]:
                values = [
                    v
                    for arm in by_label[label]
                    if isinstance(v := dig(arm["scenarios"].get(scenario), path), int | float)
                ]
                means.append(sum(values) / len(values) if values else None)
            if None not in means and means[1]:
                out[f"{scenario}.{path}"] = {
                    labels[0]: round(means[0], 3),
                    labels[1]: round(means[1], 3),
                    "ratio": round(means[0] / means[1], 3),
                }
    return out


def chart(arms: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'); no chart")
        return False
    panels = [
        ("hot", "hot seat: latency CDF"),
        ("onsale", "onsale, 1 seat: latency CDF"),
        ("onsale4", "onsale, 1-4 seats: latency CDF"),
        ("browse", "seat map reads (500 seats): latency CDF"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    flat = axes.flatten()
    labels = list(dict.fromkeys(a["label"] for a in arms))
    rounds = max((a.get("round", 1) for a in arms), default=1)

    def style(arm: dict[str, Any]) -> dict[str, Any]:
        name = arm["label"] + (f" #{arm.get('round', 1)}" if rounds > 1 else "")
        dashes = "-" if arm.get("round", 1) % 2 else "--"
        return {"label": name, "color": f"C{labels.index(arm['label'])}", "linestyle": dashes}

    for ax, (name, title) in zip(flat, panels, strict=False):
        for arm in arms:
            summary = arm["scenarios"].get(name)
            if not summary or not summary.get("cdf_ms"):
                continue
            cdf = summary["cdf_ms"]
            ax.plot(cdf, [100 * (i + 1) / len(cdf) for i in range(len(cdf))], **style(arm))
            if name == "onsale4" and "browse" in summary:
                b = summary["browse"]["cdf_ms"]
                ax_b = flat[4]
                ax_b.plot(b, [100 * (i + 1) / len(b) for i in range(len(b))], **style(arm))
        ax.set_title(title)
        ax.set_xscale("log")
        ax.set_xlabel("latency ms (log)")
        ax.set_ylabel("% of requests")
        ax.axvline(150, color="grey", linestyle=":", linewidth=1)
        ax.legend(fontsize=7)
    flat[4].set_title("seat map reads during onsale 1-4: latency CDF")
    flat[4].set_xscale("log")
    flat[4].set_xlabel("latency ms (log)")
    flat[4].axvline(150, color="grey", linestyle=":", linewidth=1)
    flat[4].legend(fontsize=7)
    ax = flat[5]
    metrics = [
        ("onsale req/s", "onsale", "requests_per_s"),
        ("onsale bookings/s", "onsale", "bookings_per_s"),
        ("onsale4 req/s", "onsale4", "requests_per_s"),
        ("browse req/s", "browse", "requests_per_s"),
    ]
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        values = [dig(arm["scenarios"].get(s), p) or 0 for _, s, p in metrics]
        bar = style(arm)
        ax.bar(
            [m + i * width for m in range(len(metrics))],
            values,
            width,
            label=bar["label"],
            color=bar["color"],
            alpha=1.0 if arm.get("round", 1) % 2 else 0.6,
        )
    ax.set_xticks([m + width * (len(arms) - 1) / 2 for m in range(len(metrics))])
    ax.set_xticklabels([m[0] for m in metrics], rotation=15, fontsize=8)
    ax.set_title("throughput")
    ax.legend(fontsize=7)
    fig.suptitle("CinemaCore onsale benchmark")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


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


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
    }


def main(argv: Sequence[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    if args.compare and not args.spawn:
        parser.error("--compare restarts the server with other settings: use it with --spawn")
    args.load_procs = max(1, min(args.load_procs, args.users))
    arms_spec = parse_compare(args.compare)

    started_at = datetime.now(UTC)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_dir / f"onsale-{started_at.strftime('%Y%m%dT%H%M%SZ')}"
    tag = secrets.token_hex(4)
    env = dict(os.environ)
    env.pop("HOLD_FILTER", None)
    if args.spawn:
        dsn = with_database(args.database_url, f"cinema_bench_{tag}")
        env.update(
            DATABASE_URL=dsn,
            REDIS_URL=args.redis_url,
            REDIS_KEY_PREFIX=f"cinemabench:{tag}:",
            JWT_SECRET=secrets.token_urlsafe(48),
            LOG_LEVEL="WARNING",
            DB_POOL_MAX=str(args.db_pool_max),
            # The limiter still runs (its Redis call is part of a booking's cost), but the
            # benchmark's users book far faster than a person and must not be turned away.
            RATE_LIMIT_BOOKINGS_PER_MINUTE="1000000",
            RATE_LIMIT_AUTH_PER_MINUTE="1000000",
            # No payment provider: a booking is the hold alone (with a Stripe key every
            # booking would also create a payment intent, which is not what this measures).
            STRIPE_SECRET_KEY="",
            SMTP_HOST="",
            # The worker's reconciler would add its own transactions to the hot seat's count;
            # it sweeps at start-up and then hourly (no hold falls due during a run anyway).
            EXPIRY_RECONCILE_SECONDS="3600",
        )
    else:
        dsn = args.database_url
        env.update(DATABASE_URL=dsn, JWT_SECRET=env.get("JWT_SECRET") or secrets.token_urlsafe(48))
    pg = Postgres(dsn)
    servers: list[SpawnedServer] = []
    result: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "results_dir"},
        "note": "2 cores shared by server, PostgreSQL, Redis and load generator",
        "database": database_name(dsn),
    }
    run: Run | None = None
    arms: list[dict[str, Any]] = []
    try:
        if args.spawn:
            log(f"database {database_name(dsn)}, redis prefix cinemabench:{tag}:")
            run_cinema(env, "migrate")
        with_worker = args.spawn and args.worker == "auto" and cli_has_command(env, "worker")
        for round_no in range(args.rounds):
            for label, overrides in arms_spec:
                if args.spawn:
                    server = SpawnedServer(
                        {**env, **overrides}, args.workers, stem.with_suffix(".server.log")
                    )
                    servers.append(server)
                    log(f"round {round_no + 1}: starting {label} on {server.url}")
                    server.start(with_worker)
                    arm = Arm(label, server.url, server.api_pids, server.worker_pids)
                else:
                    pids = [int(p) for p in (args.api_pids or "").split(",") if p]
                    arm = Arm(label, args.url, lambda pids=pids: pids, lambda: [])
                try:
                    if run is None:
                        fixture = asyncio.run(create_fixture(arm.url, pg, env, args))
                        run = Run(args, pg, fixture)
                    report = run.arm(arm)
                    report["round"] = round_no + 1
                    arms.append(report)
                finally:
                    if args.spawn:
                        server.stop()
    finally:
        if args.spawn:
            _cleanup(args, dsn, env["REDIS_KEY_PREFIX"])
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
