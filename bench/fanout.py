#!/usr/bin/env python3
"""Fan-out benchmark: V concurrent SSE viewers of one screening during its onsale.

    .venv/bin/python -m bench.fanout [--viewers 2000] [--buyers 200] [--seats 1000]
        [--viewer-procs 4] [--workers 2] [--rounds 2]

It starts two `cinema serve --workers N` on a fresh database (dropped afterwards) and its own
Redis key prefix: one publishing seat changes (SSE_PUBLISH=true) and one not (false). Each
round runs three onsales, each of a fresh screening of --seats seats that B buyers book one
seat a request (every seat once: no conflicts, so each arm does the same work) until it is
sold out:
  off      the non-publishing server, no viewers: what a booking costs without the live status
  on       the publishing server, no viewers: what publishing adds (target: no slowdown)
  viewers  the publishing server with V viewers of the screening on sale, connected before the
           sale from --viewer-procs processes of their own (many aiohttp connections each), so
           the load generator is not in the API's processes
Per arm: bookings/s, booking latency p50/p99 (from the buyers). For `viewers`: the delivery
latency of every held event at every viewer, from the server's event timestamp `at` (taken
when the booking's state changed, before its 201) to the event's arrival (same clock: one
machine); viewers dropped; viewers whose map equals PostgreSQL's at the end; API RSS per
process (VmHWM: peak, reset before the viewers connect). Targets: delivery p99 <= 500 ms, RSS
<= 150 MB per API process, `viewers` bookings/s within 10 % of `on`.
Each viewer sends its own X-Forwarded-For (the server trusts 127.0.0.1), so the per-address
cap (SSE_MAX_PER_CLIENT, leases in Redis) is exercised, not switched off.
Prints one JSON object; see docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from array import array
from collections import Counter, deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.common import (
    Api,
    CpuMeter,
    SpawnedServer,
    hall_layout,
    log,
    memory_kb,
    percentile,
    reset_peak_rss,
)
from cinema.auth.model import Role
from cinema.auth.tokens import Principal, TokenIssuer
from cinema.store.migrations import migrate
from cinema.store.pool import drop_database

STATUS_OF = {b"held": "LOCKED", b"released": "AVAILABLE", b"sold": "SOLD"}
# Arms watched by the viewers, and the server each arm books on (others: the one it names).
# `baseline`: the `viewers` arm on a server running another source tree (--baseline-src).
WATCHED = ("viewers", "baseline")
SERVER_OF = {"viewers": "on"}


# --- viewers (in their own processes) --------------------------------------------------------


class Watcher(asyncio.Protocol):
    """One viewer on a raw connection (an asyncio Protocol: a callback per chunk, no task
    switch, so 2,000 of them cost the load generator little). The server writes each batch
    of frames as one HTTP chunk, so the chunk framing sits between frames and the frames
    can be found without decoding it. Every viewer counts the events it gets
    after its first resync; a `full` one also parses each event, keeps the seat map it
    describes and records each event's delivery latency."""

    def __init__(self, latencies: array[float], full: bool, request: bytes) -> None:
        self.full = full
        self.request = request
        self.seats: dict[int, str] = {}
        self.latencies = latencies
        self.first_id = -1
        self.events = 0
        self.status: int | None = None
        self.ended = False
        self.ready = asyncio.Event()
        self._head = True  # still reading the response's head
        self._rest = b""
        self._tail = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.ready.set()

    def data_received(self, data: bytes) -> None:
        if self.first_id >= 0 and not self.full:  # counting from here on
            self.events += (self._tail + data).count(b"\nevent: ")
            self._tail = data[-7:]
            return
        now = time.time()
        if self._head:
            head, found, data = (self._rest + data).partition(b"\r\n\r\n")
            if not found:
                self._rest = head
                return
            self._head, self._rest = False, b""
            self.status = int(head.split(b" ", 2)[1])
            if self.status != 200:
                self.ready.set()
                return
        *frames, self._rest = (self._rest + data).split(b"\n\n")
        for frame in frames:
            start = frame.find(b"id: ")  # after the chunk framing, if any
            if start >= 0:
                self._frame(frame[start:], now)
        if self.first_id >= 0 and not self.full:
            self.events += self._rest.count(b"\nevent: ")
            self._tail = self._rest[-7:]

    def _frame(self, frame: bytes, now: float) -> None:
        head, _, rest = frame.partition(b"\n")
        name_line, _, data_line = rest.partition(b"\n")
        name = name_line[7:]
        if name == b"resync":
            if self.first_id < 0:
                self.first_id = int(head[4:])
                self.ready.set()
            if self.full:
                seats = orjson.loads(data_line[6:])["seats"]
                self.seats = {s["id"]: s["status"] for s in seats}
            return
        self.events += 1
        if self.full and name in STATUS_OF:
            body = orjson.loads(data_line[6:])
            for seat_id in body["seat_ids"]:
                self.seats[seat_id] = STATUS_OF[name]
            self.latencies.append((now - body["at"]) * 1000)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(url: str, watchers: list[Watcher]) -> None:
    host, _, port = url.split("/")[2].partition(":")
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(50)  # connect gradually: each connect gets a full resync

    async def start(watcher: Watcher) -> None:
        async with gate:
            try:
                await loop.create_connection(lambda: watcher, host, int(port))
            except OSError:
                watcher.ended = True
                return
            await watcher.ready.wait()

    await asyncio.gather(*(start(w) for w in watchers))


async def _watch(url: str, count: int, first: int, every: int, conn: Connection) -> None:
    latencies: array[float] = array("d")
    path = "/" + url.split("/", 3)[3]
    watchers = []
    for n in range(first, first + count):
        address = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-Forwarded-For: {address}\r\n\r\n"
        watchers.append(Watcher(latencies, n % every == 0, request.encode()))
    await _connect(url, watchers)
    refused = Counter(w.status for w in watchers if w.status != 200)
    conn.send(("ready", sum(not w.ended for w in watchers), dict(refused)))
    loop = asyncio.get_running_loop()
    truth, last_id = await loop.run_in_executor(None, conn.recv)
    live = [w for w in watchers if not w.ended]
    for _ in range(300):  # up to 60 s for the last events to land
        if all(w.first_id + w.events >= last_id for w in live):
            break
        await asyncio.sleep(0.2)
    full = [w for w in live if w.full]
    answer = {
        "exact_maps": sum(w.seats == truth for w in full),
        "full_viewers": len(full),
        "complete": sum(w.first_id + w.events == last_id for w in live),
        "ahead": sum(w.first_id + w.events > last_id for w in live),  # an event counted twice
        "behind": sum(w.first_id + w.events < last_id for w in live),
        "dropped": sum(w.ended for w in watchers),
        "events_received": sum(w.events for w in watchers),
        "cpu_seconds": time.process_time(),
    }
    for watcher in watchers:
        watcher.close()
    conn.send(("done", latencies.tobytes(), answer))


def pin(pid: int, cpus: set[int] | None) -> None:
    """Every thread of `pid` onto `cpus` (threads started later inherit it)."""
    if not cpus:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def viewer_process(
    url: str, count: int, first: int, every: int, cpus: set[int] | None, conn: Connection
) -> None:
    pin(os.getpid(), cpus)
    asyncio.run(_watch(url, count, first, every, conn))


class ViewerFleet:
    """--viewer-procs processes holding `viewers` streams of one screening between them."""

    def __init__(
        self, url: str, viewers: int, procs: int, every: int, cpus: set[int] | None
    ) -> None:
        context = multiprocessing.get_context("spawn")
        share = [viewers // procs + (i < viewers % procs) for i in range(procs)]
        self.pipes: list[Connection] = []
        self.procs = []
        for i, count in enumerate(share):
            parent, child = context.Pipe()
            proc = context.Process(
                target=viewer_process, args=(url, count, sum(share[:i]), every, cpus, child)
            )
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    async def ready(self) -> dict[str, Any]:
        answers = await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes))
        refused: Counter[str] = Counter()
        for _, _, by_status in answers:
            refused.update({str(k): v for k, v in by_status.items()})
        return {"connected": sum(a[1] for a in answers), "refused": dict(refused)}

    async def finish(self, truth: dict[int, str], last_id: int) -> dict[str, Any]:
        for pipe in self.pipes:
            pipe.send((truth, last_id))
        answers = await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes))
        for proc in self.procs:
            proc.join(timeout=30)
        latencies = array("d")
        totals: Counter[str] = Counter()
        for _, raw, counts in answers:
            latencies.frombytes(raw)
            totals.update(counts)
        return {"latencies": latencies, **{k: round(v, 1) for k, v in totals.items()}}


# --- the onsale and the arms -----------------------------------------------------------------


async def _accounts(dsn: str, secret: str, buyers: int) -> tuple[str, list[str]]:
    issuer = TokenIssuer(secret, 3600)
    conn = await asyncpg.connect(dsn)
    try:
        ids = [
            await conn.fetchval(
                "INSERT INTO users (email, password_hash, role) VALUES ($1, 'x', $2) RETURNING id",
                f"fanout-{i}-{secrets.token_hex(4)}@example.com",
                (Role.ADMIN if i == 0 else Role.CUSTOMER).value,
            )
            for i in range(buyers + 1)
        ]
    finally:
        await conn.close()
    admin = issuer.issue(Principal(ids[0], True, Role.ADMIN))
    return admin, [issuer.issue(Principal(i, False, Role.CUSTOMER)) for i in ids[1:]]


async def _screening(api: Api, admin: str, hall_id: int, movie_id: int) -> tuple[int, list[int]]:
    screening = await api.ok(
        "POST",
        "/api/admin/screenings/",
        {
            "movie_id": movie_id,
            "hall_id": hall_id,
            "starts_at": "2099-01-01T19:00:00+00:00",
            "prices": {"standard": "10.00"},
            "currency": "usd",
        },
        admin,
        201,
    )
    return int(screening["id"]), await api.seat_ids(int(screening["id"]))


async def _onsale(
    api: Api, tokens: list[str], screening_id: int, seats: list[int]
) -> dict[str, Any]:
    """Every buyer books one seat a request from a shared shuffled list until none is left."""
    left = deque(random.sample(seats, len(seats)))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def buyer(token: str) -> None:
        while left:
            seat = left.popleft()
            began = time.perf_counter()
            status, _ = await api.call(
                "POST", "/api/bookings/", {"screening_id": screening_id, "seat_ids": [seat]}, token
            )
            latencies.append((time.perf_counter() - began) * 1000)
            statuses[status] += 1

    began = time.perf_counter()
    await asyncio.gather(*(buyer(t) for t in tokens))
    seconds = time.perf_counter() - began
    return {
        "bookings": statuses[201],
        "seconds": round(seconds, 3),
        "bookings_per_second": round(statuses[201] / seconds, 1),
        "booking_p50_ms": round(percentile(latencies, 50), 1),
        "booking_p99_ms": round(percentile(latencies, 99), 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def _settled_event_id(api: Api, screening_id: int, truth: dict[int, str]) -> int:
    """The id of the event after which the live status equals PostgreSQL's `truth`: a fresh
    stream's resync names the id its map is as of. Right after the last 201 the last changes
    may still be on their way (published in batches, in the background), so the resync is
    read again until its map is the truth, or for 60 s."""
    deadline = time.monotonic() + 60
    while True:
        event_id, seats = await _resync(api, screening_id)
        if seats == truth or time.monotonic() > deadline:
            return event_id
        await asyncio.sleep(0.1)


async def _resync(api: Api, screening_id: int) -> tuple[int, dict[int, str]]:
    url = f"{api.url}/api/screenings/{screening_id}/events"
    event_id = None
    async with api.session.get(url, headers={"X-Forwarded-For": "192.0.2.1"}) as resp:
        async for line in resp.content:
            if line.startswith(b"id: "):
                event_id = int(line[4:])
            elif line.startswith(b"data: ") and event_id is not None:
                seats = orjson.loads(line[6:])["seats"]
                return event_id, {s["id"]: s["status"] for s in seats}
    raise RuntimeError("the stream ended before its resync")


def _api_memory(pids: list[int]) -> list[dict[str, float]]:
    rows = []
    for pid in pids:
        kb = memory_kb(pid)
        sockets = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                sockets += os.readlink(fd).startswith("socket:")
        except OSError:
            pass
        rows.append(
            {
                "rss_mb": round(kb.get("VmRSS", 0) / 1024, 1),
                "peak_rss_mb": round(kb.get("VmHWM", 0) / 1024, 1),
                "open_sockets": sockets,
            }
        )
    return rows


class Bench:
    def __init__(self, args: argparse.Namespace, servers: dict[str, SpawnedServer]) -> None:
        self.args = args
        self.servers = servers
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.admin = ""
        self.tokens: list[str] = []
        self.hall_id = self.movie_id = 0

    async def prepare(self, dsn: str, secret: str) -> None:
        self.admin, self.tokens = await _accounts(dsn, secret, self.args.buyers)
        api = Api(self.servers["on"].url, self.session)
        movie = await api.ok(
            "POST",
            "/api/admin/movies/",
            {"title": "Fan-out", "duration_minutes": 90},
            self.admin,
            201,
        )
        hall = await api.ok(
            "POST",
            "/api/admin/halls/",
            {"name": "Fan-out", "layout": hall_layout(self.args.seats)},
            self.admin,
            201,
        )
        self.movie_id, self.hall_id = int(movie["id"]), int(hall["id"])

    async def arm(self, label: str) -> dict[str, Any]:
        server = self.servers[SERVER_OF.get(label, label)]
        api = Api(server.url, self.session)
        screening_id, seats = await _screening(api, self.admin, self.hall_id, self.movie_id)
        fleet = None
        report: dict[str, Any] = {"arm": label}
        if label in WATCHED:
            for pid in server.api_pids():
                reset_peak_rss(pid)
            url = f"{server.url}/api/screenings/{screening_id}/events"
            began = time.perf_counter()
            fleet = ViewerFleet(
                url,
                self.args.viewers,
                self.args.viewer_procs,
                self.args.parse_every,
                self.args.load_cpus,
            )
            report["viewers"] = await fleet.ready()
            report["viewers"]["connect_seconds"] = round(time.perf_counter() - began, 1)
            log(f"{label}: {report['viewers']}")
        api_cpu = CpuMeter(server.api_pids)
        api_cpu.start()
        report |= await _onsale(api, self.tokens, screening_id, seats)
        report["api_cpu_seconds"] = api_cpu.stop()
        if fleet is not None:
            await self._delivery(server, fleet, screening_id, report)
        log(f"{label}: {report['bookings_per_second']} bookings/s")
        return report

    async def _delivery(
        self, server: SpawnedServer, fleet: ViewerFleet, screening_id: int, report: dict[str, Any]
    ) -> None:
        api = Api(server.url, self.session)
        reply = await api.ok("GET", f"/api/screenings/{screening_id}/seats/")
        truth = {s["id"]: s["status"] for s in reply["seats"]}  # PostgreSQL's
        last_id = await _settled_event_id(api, screening_id, truth)
        report["api_processes"] = _api_memory(server.api_pids())  # viewers still on
        done = await fleet.finish(truth, last_id)
        latencies = done.pop("latencies")
        report["viewer_cpu_seconds"] = done.pop("cpu_seconds")  # connect + sale, all processes
        report["delivery"] = {
            **done,
            "events_expected": report["bookings"] * self.args.viewers,
            "latency_samples": len(latencies),
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
            "max_ms": round(max(latencies), 1) if latencies else None,
        }

    async def close(self) -> None:
        await self.session.close()


# --- main ------------------------------------------------------------------------------------


def _env(args: argparse.Namespace, dsn: str, secret: str, publish: bool) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_KEY_PREFIX": f"benchfanout:{secrets.token_hex(4)}:",
        "JWT_SECRET": secret,
        "EXPIRY_SCHEDULER": "off",
        "FOLLOW_UPS": "inprocess",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_AUTH_PER_MINUTE": "0",
        "RATE_LIMIT_BOOKINGS_PER_MINUTE": "0",
        "STRIPE_SECRET_KEY": "",
        "SMTP_HOST": "",
        "DB_POOL_MAX": str(args.pool),
        "TRUSTED_PROXIES": "127.0.0.1",  # each viewer names its own address
        "SSE_PUBLISH": "true" if publish else "false",
        "SSE_BATCH_SECONDS": str(args.batch_seconds),
    }


def _summary(arms: list[dict[str, Any]]) -> dict[str, Any]:
    def median(label: str, key: str) -> float:
        return float(statistics.median(a[key] for a in arms if a["arm"] == label))

    present = [x for x in ("off", "on", *WATCHED) if any(a["arm"] == x for a in arms)]
    rates = {x: median(x, "bookings_per_second") for x in present}
    summary: dict[str, Any] = {
        "bookings_per_second_median": rates,
        "on_vs_off": round(rates["on"] / rates["off"], 3),
        "booking_p99_ms_median": {x: median(x, "booking_p99_ms") for x in present},
        "api_cpu_seconds_median": {x: median(x, "api_cpu_seconds") for x in present},
    }
    for label in present[2:]:
        watched = [a for a in arms if a["arm"] == label]
        summary[label] = {
            "vs_on": round(rates[label] / rates["on"], 3),
            "delivery_p50_ms": [a["delivery"]["p50_ms"] for a in watched],
            "delivery_p99_ms": [a["delivery"]["p99_ms"] for a in watched],
            "api_peak_rss_mb": [[p["peak_rss_mb"] for p in a["api_processes"]] for a in watched],
        }
    summary["viewers_vs_on"] = summary["viewers"]["vs_on"]
    summary["targets"] = {"delivery_p99_ms": 500, "api_rss_mb": 150, "viewers_vs_on_at_least": 0.9}
    return summary


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cinema")
    dsn = f"{base.rpartition('/')[0]}/cinema_bench_fanout_{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(48)
    await migrate(dsn)
    logs = Path(tempfile.gettempdir())
    servers = {
        label: SpawnedServer(
            _env(args, dsn, secret, label != "off"), args.workers, logs / f"fanout-{label}.log"
        )
        for label in ("on", "off")
    }
    labels = ["on", "off", "viewers"]
    if args.baseline_src is not None:
        servers["baseline"] = SpawnedServer(
            _env(args, dsn, secret, True) | dict(args.baseline_env),
            args.workers,
            logs / "fanout-baseline.log",
            cwd=args.baseline_src,
        )
        labels.append("baseline")
    bench = Bench(args, servers)
    arms: list[dict[str, Any]] = []
    usable = sorted(os.sched_getaffinity(0))
    try:
        for server in servers.values():
            server.start(with_worker=False)
            parent = [server.proc.pid] if server.proc is not None else []
            for pid in parent + server.api_pids():
                pin(pid, args.api_cpus)
        pin(os.getpid(), args.load_cpus)  # the buyers
        await bench.prepare(dsn, secret)
        for round_no in range(args.rounds):
            if round_no:  # the watched arms take turns going first
                labels[2:] = reversed(labels[2:])
            for label in labels:
                log(f"round {round_no + 1}: {label}")
                arms.append({"round": round_no + 1, **await bench.arm(label)})
    finally:
        await bench.close()
        for server in servers.values():
            server.stop()
        await drop_database(dsn)
    return {
        "benchmark": "fanout",
        "viewers": args.viewers,
        "viewer_processes": args.viewer_procs,
        "buyers": args.buyers,
        "seats": args.seats,
        "api_processes_per_server": args.workers,
        "sse_batch_seconds": args.batch_seconds,
        "baseline_src": None if args.baseline_src is None else str(args.baseline_src),
        "baseline_env": dict(args.baseline_env),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "api_cpus": sorted(args.api_cpus or usable),
        "viewer_and_buyer_cpus": sorted(args.load_cpus or usable),
        "note": "PostgreSQL and Redis run on every core; the machine is shared with other"
        " agents' work (see loadavg)",
        "summary": _summary(arms),
        "arms": arms,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _cpus(text: str) -> set[int]:
    return {int(c) for c in text.split(",") if c}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=2000)
    parser.add_argument("--viewer-procs", type=int, default=4, help="processes holding the viewers")
    parser.add_argument("--buyers", type=int, default=200)
    parser.add_argument("--seats", type=int, default=1000, help="seats of each arm's screening")
    parser.add_argument("--workers", type=int, default=2, help="API processes per server")
    parser.add_argument("--pool", type=int, default=20, help="DB_POOL_MAX per API process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--api-cpus", type=_cpus, help="pin the API processes, e.g. 0")
    parser.add_argument("--load-cpus", type=_cpus, help="pin viewers and buyers, e.g. 1")
    parser.add_argument("--batch-seconds", type=float, default=0.05, help="SSE_BATCH_SECONDS")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run the viewers arm on a server importing cinema from this source tree"
        " (e.g. `git archive main | tar -x -C DIR`): before/after in one run",
    )
    parser.add_argument(
        "--baseline-env",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the --baseline-src server only, e.g. SSE_BATCH_SECONDS=0.1",
    )
    parser.add_argument(
        "--parse-every", type=int, default=10, help="every Nth viewer parses events (latency)"
    )
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    problems = _problems(figures, args)
    for problem in problems:
        log(f"FAILED: {problem}")
    return 1 if problems or not figures["summary"] else 0


def _problems(figures: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """What makes the run fail: a seat not sold exactly once, a viewer that missed events or
    whose map differs from PostgreSQL's."""
    problems = []
    for arm in figures["arms"]:
        name = f"round {arm['round']} {arm['arm']}"
        if arm["statuses"] != {"201": args.seats}:
            problems.append(f"{name}: answers {arm['statuses']}, not {args.seats} x 201")
        got = arm.get("delivery")
        if got is not None and got["complete"] != args.viewers:
            problems.append(f"{name}: {got['complete']} of {args.viewers} viewers complete {got}")
        if got is not None and got["exact_maps"] != got["full_viewers"]:
            problems.append(f"{name}: {got['exact_maps']} of {got['full_viewers']} maps exact")
    return problems


if __name__ == "__main__":
    sys.exit(main())
