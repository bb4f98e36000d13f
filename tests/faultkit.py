"""Parts for the fault-injection suite (tests/test_faults.py): a redis-server of our own that can
be killed, frozen and restarted empty; a storm of real clients that records every answer; the
"every free seat is bookable again" probe; and the invariants read straight from PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.processes import free_port, wait_until

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
# Outcomes that leave the client not knowing what happened: it retries with the same key.
DISCONNECTED = 0


class RedisServer:
    """`redis-server` on a free port, no persistence: killed or restarted, it comes back empty."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                *("--dir", str(self._workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, within=10)
        return self

    def _answers(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)


async def terminate_sessions(database_url: str) -> int:
    """What a failover does to the service: end every session on the test database."""
    database = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/postgres")
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        )
    finally:
        await conn.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Answer:
    method: str
    what: str  # book / map / cancel / probe
    status: int  # DISCONNECTED when the connection broke or timed out
    seconds: float
    at: float  # monotonic time the request started
    json_error: bool = False
    retry_after: bool = False
    detail: str = ""


@dataclass
class Ledger:
    """Every answer, the booking ids answered 201 and those answered cancelled, and the
    requests whose outcome the client could not know (to retry with the same key)."""

    answers: list[Answer] = field(default_factory=list)
    created: set[int] = field(default_factory=set)
    cancelled: set[int] = field(default_factory=set)
    unsure_books: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    unsure_cancels: dict[int, str] = field(default_factory=dict)
    owners: dict[int, str] = field(default_factory=dict)  # booking id -> its buyer's token

    def bad_5xx(self) -> list[Answer]:
        """5xx answers other than a JSON 503 with Retry-After."""
        return [
            a
            for a in self.answers
            if a.status >= 500 and not (a.status == 503 and a.json_error and a.retry_after)
        ]

    def disconnects(self) -> list[Answer]:
        return [a for a in self.answers if a.status == DISCONNECTED]

    def summary(self) -> dict[str, Any]:
        slowest = max(self.answers, key=lambda a: a.seconds, default=None)
        return {
            "requests": len(self.answers),
            "statuses": {
                str(k): v for k, v in sorted(Counter(a.status for a in self.answers).items())
            },
            "slowest": None
            if slowest is None
            else {
                "seconds": round(slowest.seconds, 3),
                "request": f"{slowest.method} {slowest.what}",
                "status": slowest.status,
            },
        }


class Client:
    """The API as buyers use it, every answer written to the ledger."""

    def __init__(self, session: aiohttp.ClientSession, ledger: Ledger) -> None:
        self.session = session
        self.ledger = ledger
        self.base_url = ""

    async def call(
        self, method: str, what: str, path: str, token: str, body: Any = None, key: str = ""
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        if key:
            headers["Idempotency-Key"] = key
        started = time.monotonic()
        answer = Answer(method, what, DISCONNECTED, 0.0, started)
        payload: Any = None
        try:
            async with self.session.request(
                method, self.base_url + path, json=body, headers=headers, timeout=REQUEST_TIMEOUT
            ) as resp:
                raw = await resp.read()
                answer.status = resp.status
                answer.retry_after = "Retry-After" in resp.headers
                try:
                    payload = json.loads(raw) if raw else None
                except ValueError:
                    payload = None
                answer.json_error = isinstance(payload, dict) and "error" in payload
                if resp.status >= 500:
                    answer.detail = raw[:200].decode(errors="replace")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            answer.detail = repr(exc)[:200]
        answer.seconds = time.monotonic() - started
        self.ledger.answers.append(answer)
        return answer.status, payload

    async def book(
        self, token: str, screening_id: int, seats: list[int], key: str, what: str = "book"
    ) -> tuple[int, int | None]:
        """(status, booking id if 201)."""
        body = {"screening_id": screening_id, "seat_ids": seats}
        status, payload = await self.call("POST", what, "/api/bookings/", token, body, key)
        booking_id = None
        self.ledger.unsure_books.pop(key, None)
        if status == 201:
            booking_id = int(payload["id"])
            self.ledger.created.add(booking_id)
            self.ledger.owners[booking_id] = token
        elif status == DISCONNECTED or status >= 500:
            self.ledger.unsure_books[key] = (token, seats)
        return status, booking_id

    async def cancel(self, token: str, booking_id: int) -> int:
        status, _ = await self.call("DELETE", "cancel", f"/api/bookings/{booking_id}/", token)
        if status == 200:
            self.ledger.cancelled.add(booking_id)
            self.ledger.unsure_cancels.pop(booking_id, None)
        elif status == DISCONNECTED or status >= 500:
            self.ledger.unsure_cancels[booking_id] = token
        else:
            self.ledger.unsure_cancels.pop(booking_id, None)
        return status

    async def seat_map(self, token: str, screening_id: int) -> dict[int, str] | None:
        status, payload = await self.call(
            "GET", "map", f"/api/screenings/{screening_id}/seats/", token
        )
        if status != 200:
            return None
        return {int(s["id"]): str(s["status"]) for s in payload["seats"]}


class Storm:
    """Buyers reading the map, booking 1-2 seats they saw free, and cancelling, concurrently."""

    def __init__(
        self, client: Client, tokens: list[str], screening_id: int, seat_ids: list[int]
    ) -> None:
        self.client = client
        self.tokens = tokens
        self.screening_id = screening_id
        self.seat_ids = seat_ids
        self._free: list[int] = list(seat_ids)
        self._mine: dict[str, list[int]] = {t: [] for t in tokens}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, buyers: int) -> None:
        self._tasks = [
            asyncio.create_task(self._buyer(self.tokens[i % len(self.tokens)], random.Random(i)))
            for i in range(buyers)
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _buyer(self, token: str, rnd: random.Random) -> None:
        while not self._stop.is_set():
            roll = rnd.random()
            if roll < 0.25:
                seen = await self.client.seat_map(token, self.screening_id)
                if seen is not None:
                    self._free = sorted(s for s, st in seen.items() if st == "AVAILABLE")
                status = 200 if seen is not None else DISCONNECTED
            elif roll < 0.45 and self._mine[token]:
                booking_id = self._mine[token].pop(rnd.randrange(len(self._mine[token])))
                status = await self.client.cancel(token, booking_id)
            else:
                status = await self._book(token, rnd)
            if status == DISCONNECTED or status >= 500:
                await asyncio.sleep(0.05)  # the service is down: do not spin on refusals

    async def _book(self, token: str, rnd: random.Random) -> int:
        pool = self._free if self._free else self.seat_ids
        if rnd.random() < 0.5:
            pool = pool[:6]  # the best free seats, which many buyers want at once
        seats = sorted(set(rnd.sample(pool, min(len(pool), rnd.choice((1, 2))))))
        status, booking_id = await self.client.book(
            token, self.screening_id, seats, uuid.uuid4().hex
        )
        if booking_id is not None:
            self._mine[token].append(booking_id)
        return status


async def cancel_all(client: Client) -> None:
    """Every buyer cancels every booking it was answered 201 for: the whole hall is freed, so
    a claim left behind in Redis shows as a free seat that cannot be booked."""
    ledger = client.ledger
    live = sorted(ledger.created - ledger.cancelled)
    await asyncio.gather(*(client.cancel(ledger.owners[b], b) for b in live))


async def settle(client: Client, screening_id: int, within: float = 20.0) -> None:
    """Retry every request whose outcome the client could not know, the way a client should:
    the same Idempotency-Key for a booking, the same DELETE for a cancel."""
    ledger = client.ledger
    deadline = time.monotonic() + within
    while ledger.unsure_books or ledger.unsure_cancels:
        assert time.monotonic() < deadline, (
            f"{len(ledger.unsure_books)} bookings and {len(ledger.unsure_cancels)} cancels"
            f" still without a definite answer {within} s after the storm"
        )
        for key, (token, seats) in list(ledger.unsure_books.items()):
            await client.book(token, screening_id, seats, key)
        for booking_id, token in list(ledger.unsure_cancels.items()):
            await client.cancel(token, booking_id)
        await asyncio.sleep(0.1)


async def seconds_until_free_seats_bookable(
    client: Client, token: str, screening_id: int, fault_ended: float, within: float = 5.0
) -> float:
    """Every seat the map shows AVAILABLE is booked (then cancelled) by a fresh buyer, retried
    until all succeeded; fails when `within` seconds after the fault ended were not enough.
    Returns the seconds from the end of the fault until the last of them was booked."""
    deadline = fault_ended + within
    seen = None
    while seen is None:
        seen = await client.seat_map(token, screening_id)
        assert seen is not None or time.monotonic() < deadline, "no seat map after the fault"
    pending = {s for s, st in seen.items() if st == "AVAILABLE"}
    last: dict[int, int] = {}
    booked_at = fault_ended

    async def attempt(seat: int) -> None:
        status, booking_id = await client.book(
            token, screening_id, [seat], uuid.uuid4().hex, what="probe"
        )
        last[seat] = status
        if booking_id is not None:
            nonlocal booked_at
            booked_at = max(booked_at, time.monotonic())
            pending.discard(seat)
            await client.cancel(token, booking_id)

    while pending:
        if time.monotonic() > deadline:
            refused = sorted(pending)
            raise AssertionError(
                f"{len(refused)} of {len(seen)} seats the map shows AVAILABLE still refused"
                f" {within} s after the fault ended: {refused[:20]}"
                f" (answers: {dict(Counter(last[s] for s in refused))})"
            )
        await asyncio.gather(*(attempt(s) for s in sorted(pending)))
        if pending:
            await asyncio.sleep(0.1)
    return booked_at - fault_ended


async def assert_invariants(database_url: str, screening_id: int, ledger: Ledger) -> None:
    """Straight from PostgreSQL: no double booking, bookings and reservations agree, and the
    live bookings are exactly those answered 201 and not answered cancelled."""
    conn = await asyncpg.connect(database_url)
    try:
        doubles = await conn.fetch(
            "SELECT seat_id, count(*) AS n FROM reservations"
            " WHERE screening_id = $1 AND status <> 'CANCELLED'"
            " GROUP BY seat_id HAVING count(*) > 1",
            screening_id,
        )
        bare = await conn.fetch(
            "SELECT b.id FROM bookings b WHERE b.screening_id = $1"
            " AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.booking_id = b.id)",
            screening_id,
        )
        mismatched = await conn.fetch(
            "SELECT DISTINCT b.id FROM bookings b JOIN reservations r ON r.booking_id = b.id"
            " WHERE b.screening_id = $1"
            " AND (b.status = 'CANCELLED') <> (r.status = 'CANCELLED')",
            screening_id,
        )
        live = {
            int(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM bookings WHERE screening_id = $1 AND status <> 'CANCELLED'",
                screening_id,
            )
        }
    finally:
        await conn.close()
    assert not doubles, f"seats with two live reservations: {[dict(r) for r in doubles]}"
    assert not bare, f"bookings without reservations: {[r['id'] for r in bare]}"
    assert not mismatched, f"bookings whose reservations disagree: {[r['id'] for r in mismatched]}"
    unknown = live - ledger.created
    assert not unknown, f"live bookings no client was answered 201 for: {sorted(unknown)}"
    expected = ledger.created - ledger.cancelled
    assert live == expected, (
        f"answered 201 and never cancelled but not live: {sorted(expected - live)};"
        f" answered cancelled but live: {sorted(live & ledger.cancelled)}"
    )


def report(name: str, ledger: Ledger, **figures: Any) -> dict[str, Any]:
    """Print the scenario's figures (visible with -s) and append them to $FAULT_REPORT."""
    line = {"scenario": name, **ledger.summary(), **figures}
    print(f"\nFAULT {json.dumps(line)}", flush=True)
    target = os.environ.get("FAULT_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    return line
