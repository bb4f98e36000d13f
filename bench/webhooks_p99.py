#!/usr/bin/env python3
"""Webhook handling latency under N concurrent deliveries (default 200), printed as figures.

    python bench/webhooks_p99.py                 # 200 concurrent deliveries, then 200 dupes
    python bench/webhooks_p99.py --deliveries 500 --no-smtp
    python bench/webhooks_p99.py --follow-ups inprocess   # emails sent by the API itself

Everything is real and local: its own PostgreSQL database (dropped afterwards), a localstripe
server for the payment intents, an SMTP sink (aiosmtpd) for the ticket emails, and a
`cinema serve` process (and, with `--follow-ups taskiq`, the default, a `cinema worker` that
sends the emails; it prints how long until the last one arrived). It books N one-seat
bookings through the API (one intent each), then
fires N signed `payment_intent.succeeded` events at once (one per booking: N transitions, N
seat locks, N emails queued) and measures each delivery from send to response; then the same
N events again (the duplicate path). Prints p50/p95/p99/max per wave and checks PostgreSQL:
every booking CONFIRMED, one event row each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import stripe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.accounts import seed_users  # noqa: E402
from bench.common import free_port, percentile  # noqa: E402
from cinema.store.migrations import migrate  # noqa: E402
from cinema.store.pool import drop_database  # noqa: E402

JWT_SECRET = "bench-" + secrets.token_hex(24)
WEBHOOK_SECRET = "whsec_bench_" + secrets.token_hex(12)


async def wait_port(port: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def spawn(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, **kwargs)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def summary(name: str, latencies: list[float], statuses: list[int], wall: float) -> str:
    ms = sorted(x * 1000 for x in latencies)  # percentiles by nearest rank (bench/common.py)
    codes = {c: statuses.count(c) for c in sorted(set(statuses))}
    return (
        f"{name:<22} n={len(ms):<4} statuses={codes}  p50={percentile(ms, 50):7.1f} ms"
        f"  p95={percentile(ms, 95):7.1f} ms  p99={percentile(ms, 99):7.1f} ms"
        f"  max={ms[-1]:7.1f} ms  mean={statistics.fmean(ms):7.1f} ms"
        f"  wall={wall:5.2f} s  ({len(ms) / wall:6.0f} deliveries/s)"
    )


def signed(intent_id: str, event_id: str) -> tuple[bytes, str]:
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            # one seat at 9.50 USD (seed): a success must pay the booking's amount and currency
            "data": {
                "object": {
                    "id": intent_id,
                    "object": "payment_intent",
                    "amount": 950,
                    "currency": "usd",
                }
            },
        }
    )
    return body.encode(), stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)


async def fire(
    session: aiohttp.ClientSession, url: str, deliveries: list[tuple[bytes, str]]
) -> tuple[list[float], list[int], float]:
    gate = asyncio.Event()

    async def one(body: bytes, header: str) -> tuple[float, int]:
        await gate.wait()
        started = time.perf_counter()
        async with session.post(
            url, data=body, headers={"Stripe-Signature": header, "Content-Type": "application/json"}
        ) as resp:
            await resp.read()
            return time.perf_counter() - started, resp.status

    tasks = [asyncio.create_task(one(b, h)) for b, h in deliveries]
    await asyncio.sleep(0.2)  # every task is parked at the gate
    started = time.perf_counter()
    gate.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    return [r[0] for r in results], [r[1] for r in results], wall


async def seed(
    base: str, database_url: str, count: int, session: aiohttp.ClientSession
) -> list[tuple[int, str]]:
    """Staff + N customers straight in the database; one screening; N bookings via the API."""
    staff_token, tokens = await seed_users(database_url, count, JWT_SECRET)
    staff = {"Authorization": "Bearer " + staff_token}

    async def post(path: str, body: Any, headers: dict[str, str]) -> Any:
        async with session.post(base + path, json=body, headers=headers) as resp:
            payload = await resp.json()
            assert resp.status == 201, (path, resp.status, payload)
            return payload

    movie = await post("/api/admin/movies/", {"title": "Bench", "duration_minutes": 90}, staff)
    rows = [{"label": f"R{r}", "seats": 50} for r in range(count // 50 + 1)]
    hall = await post("/api/admin/halls/", {"name": "Bench", "layout": {"rows": rows}}, staff)
    screening = await post(
        "/api/admin/screenings/",
        {
            "movie_id": movie["id"],
            "hall_id": hall["id"],
            "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "prices": {c: "9.50" for c in hall["categories"]},
            "currency": "usd",
        },
        staff,
    )
    async with session.get(f"{base}/api/screenings/{screening['id']}/seats/") as resp:
        seats = [s["id"] for s in (await resp.json())["seats"]]
    limit = asyncio.Semaphore(16)

    async def book(token: str, seat: int) -> tuple[int, str]:
        async with limit:
            headers = {"Authorization": "Bearer " + token}
            booking = await post(
                "/api/bookings/", {"screening_id": screening["id"], "seat_ids": [seat]}, headers
            )
            return booking["id"], booking["payment"]["payment_intent_id"]

    return list(await asyncio.gather(*(book(t, s) for t, s in zip(tokens, seats, strict=False))))


def _api_env(args: argparse.Namespace, database_url: str, stripe_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        REDIS_KEY_PREFIX=f"benchwh:{secrets.token_hex(4)}:",
        JWT_SECRET=JWT_SECRET,
        STRIPE_SECRET_KEY="sk_test_bench",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=f"http://127.0.0.1:{stripe_port}",
        LOG_LEVEL="WARNING",
        DB_POOL_MAX=str(args.pool),
        FOLLOW_UPS=args.follow_ups,
    )
    return env


class MailSink:
    """An SMTP server that only counts the ticket emails it receives."""

    received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        MailSink.received += 1
        return "250 OK"


def _start_smtp_sink(env: dict[str, str]) -> Any:
    from aiosmtpd.controller import Controller

    smtp_port = free_port()
    controller = Controller(MailSink(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    return controller


async def _deliver(args: argparse.Namespace, base: str, database_url: str, smtp: bool) -> bool:
    """Seed the bookings, fire every `succeeded` event twice, wait for the emails; True when
    every delivery answered 200."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        bookings = await seed(base, database_url, args.deliveries, session)
        print(
            f"seeded {len(bookings)} bookings with payment intents in "
            f"{time.perf_counter() - started:.1f} s"
        )
        events = [signed(intent, f"evt_bench_{booking_id}") for booking_id, intent in bookings]
        url = base + "/api/webhooks/stripe/"
        print(
            f"{args.deliveries} concurrent deliveries, one API process, "
            f"pool {args.pool}, {os.cpu_count()} CPUs, "
            f"SMTP {'off' if not smtp else 'on'}, follow-ups {args.follow_ups}:"
        )
        fired = time.perf_counter()
        first = await fire(session, url, events)
        print(summary("succeeded (fresh)", *first))
        again = await fire(session, url, events)
        print(summary("succeeded (duplicate)", *again))
        if smtp:
            for _ in range(2400):  # up to 120 s
                if MailSink.received >= len(bookings):
                    break
                await asyncio.sleep(0.05)
            print(
                f"{MailSink.received}/{len(bookings)} ticket emails received, the last "
                f"{time.perf_counter() - fired:.2f} s after the first delivery was fired"
            )
    checked = await _check(database_url, len(bookings))
    return checked and set(first[1]) == set(again[1]) == {200}


async def _check(database_url: str, bookings: int) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        confirmed = await conn.fetchval("SELECT count(*) FROM bookings WHERE status = 'CONFIRMED'")
        recorded = await conn.fetchval("SELECT count(*) FROM payment_events")
    finally:
        await conn.close()
    print(f"check: {confirmed}/{bookings} bookings CONFIRMED, {recorded} event rows")
    return bool(confirmed == bookings == recorded)


async def main(args: argparse.Namespace) -> int:
    base_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cinema")
    parts = urlsplit(base_url)
    database_url = urlunsplit(parts._replace(path=f"/cinema_bench_webhooks_{secrets.token_hex(4)}"))
    await migrate(database_url)
    procs: list[subprocess.Popen[bytes]] = []
    smtp_controller = None
    workdir = tempfile.mkdtemp(prefix="cinema-bench-")  # no stray .env is read
    try:
        stripe_port, api_port = free_port(), free_port()
        localstripe = str(Path(sys.executable).with_name("localstripe"))
        command = [localstripe, "--port", str(stripe_port), "--from-scratch"]
        procs.append(spawn(command, stderr=subprocess.DEVNULL))
        env = _api_env(args, database_url, stripe_port)
        if not args.no_smtp:
            smtp_controller = _start_smtp_sink(env)
        cinema = [sys.executable, "-m", "cinema"]
        procs.append(spawn([*cinema, "serve", "--port", str(api_port)], env=env, cwd=workdir))
        if args.follow_ups == "taskiq" and not args.no_smtp:
            procs.append(spawn([*cinema, "worker"], env=env, cwd=workdir))
        await wait_port(stripe_port)
        await wait_port(api_port)
        ok = await _deliver(args, f"http://127.0.0.1:{api_port}", database_url, not args.no_smtp)
        return 0 if ok else 1
    finally:
        stop(procs)
        if smtp_controller is not None:
            smtp_controller.stop()
        await drop_database(database_url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--pool", type=int, default=20, help="DB_POOL_MAX of the API process")
    parser.add_argument("--no-smtp", action="store_true", help="do not send ticket emails")
    parser.add_argument(
        "--follow-ups",
        choices=["taskiq", "inprocess"],
        default="taskiq",
        help="FOLLOW_UPS: emails sent by a `cinema worker` (taskiq) or by the API process",
    )
    raise SystemExit(asyncio.run(main(parser.parse_args())))
