"""Burst benchmark for expiry: 500 bookings made at once with HOLD_TTL_SECONDS=2 must all be
CANCELLED, with their seats free in PostgreSQL and in Redis, within 2 s of their deadlines;
once with the worker running throughout, once with the worker SIGKILLed right after the
burst and restarted.

Run: .venv/bin/python -m bench.expiry_burst [--bookings 500] [--concurrency 100]
It starts its own `cinema serve` and `cinema worker` processes on a fresh database and Redis
key prefix, and removes them afterwards. Needs PostgreSQL and Redis as for the tests.

Lateness is measured two ways:
- cancel: bookings.updated_at - expires_at, both from PostgreSQL's clock;
- redis:  when the bench first saw the seat's Redis key gone (polled every 50 ms) minus
          expires_at (so it carries up to 50 ms of polling granularity).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from bench.accounts import seed_users
from bench.common import free_port, percentile
from cinema.holds import seat_key
from cinema.store.migrations import migrate
from cinema.store.pool import drop_database
from tests.client import ApiClient
from tests.workerproc import ROOT, WorkerProcess, worker_env

JWT_SECRET = "bench-secret-" + "x" * 32
TTL = 2
POLL = 0.05


@dataclass
class Held:
    booking_id: int
    seat_id: int
    expires_at: float  # unix seconds


def _base(url: str) -> str:
    return url.rpartition("/")[0]


def _start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cinema", "serve", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/ready") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("API did not become ready")


async def _burst(
    api: ApiClient, tokens: list[str], count: int, concurrency: int
) -> tuple[list[Held], int, float]:
    rows = max(1, count // 25)
    screening = await api.new_screening(
        layout={"rows": [{"label": f"R{i}", "seats": 25} for i in range(rows + 1)]}
    )
    seats = screening.seat_ids[:count]
    gate = asyncio.Semaphore(concurrency)

    async def book(i: int, seat: int) -> Held:
        async with gate:
            reply = await api.book(tokens[i % len(tokens)], screening.id, [seat])
        assert reply.status == 201, reply
        expires = datetime.fromisoformat(reply.body["expires_at"]).timestamp()
        return Held(reply.body["id"], seat, expires)

    started = time.perf_counter()
    held = await asyncio.gather(*(book(i, s) for i, s in enumerate(seats)))
    return list(held), screening.id, time.perf_counter() - started


async def _watch(
    conn: asyncpg.Connection,
    rds: aioredis.Redis,
    prefix: str,
    screening_id: int,
    held: list[Held],
) -> tuple[dict[int, float], dict[int, float]]:
    """Poll until every booking is CANCELLED and every key gone (or 30 s past the deadlines)."""
    ids = [h.booking_id for h in held]
    keys = {h.booking_id: seat_key(prefix, screening_id, h.seat_id) for h in held}
    key_gone: dict[int, float] = {}
    give_up = max(h.expires_at for h in held) + 30
    while time.time() < give_up:
        now = time.time()
        waiting = [i for i in ids if i not in key_gone]
        if waiting:
            async with rds.pipeline(transaction=False) as pipe:
                for i in waiting:
                    pipe.exists(keys[i])
                exists = await pipe.execute()
            for i, e in zip(waiting, exists, strict=True):
                if not e:
                    key_gone[i] = now
        pending = await conn.fetchval(
            "SELECT count(*) FROM bookings WHERE id = ANY($1::bigint[]) AND status = 'PENDING'",
            ids,
        )
        if pending == 0 and len(key_gone) == len(ids):
            break
        await asyncio.sleep(POLL)
    rows = await conn.fetch(
        "SELECT id, status, cancel_reason, extract(epoch FROM updated_at - expires_at) AS late"
        " FROM bookings WHERE id = ANY($1::bigint[])",
        ids,
    )
    cancel_late = {
        r["id"]: float(r["late"])
        for r in rows
        if r["status"] == "CANCELLED" and r["cancel_reason"] == "expired"
    }
    expires = {h.booking_id: h.expires_at for h in held}
    redis_late = {i: t - expires[i] for i, t in key_gone.items()}
    return cancel_late, redis_late


def _report(name: str, n: int, cancel: dict[int, float], redis_: dict[int, float]) -> bool:
    ok = True
    print(f"  {name}")
    for label, data in (("cancel (PostgreSQL)", cancel), ("seat key gone (Redis)", redis_)):
        values = list(data.values())
        within = sum(1 for v in values if v <= 2.0)
        ok = ok and len(values) == n and within == n
        if not values:
            print(f"    {label:<22} none of {n} ended")
            continue
        print(
            f"    {label:<22} {len(values)}/{n} ended, {within} within 2 s;"
            f" lateness p50 {percentile(values, 50):.3f}s p99 {percentile(values, 99):.3f}s"
            f" max {max(values):.3f}s"
        )
    return ok


async def _all_free(api: ApiClient, screening_id: int, held: list[Held], count: int) -> bool:
    """The seat map, read over the API, shows every ended booking's seat AVAILABLE again."""
    statuses = await api.seat_statuses(screening_id)
    free = sum(1 for h in held if statuses[h.seat_id] == "AVAILABLE")
    print(f"    seat map: {free}/{count} AVAILABLE")
    return free == count


def _kill_and_restart(
    worker: WorkerProcess, env: dict[str, str], held: list[Held], took: float
) -> WorkerProcess:
    """SIGKILL the worker before the first deadline of the burst and start a new one."""
    worker.kill()
    killed_at = time.time()
    print(
        f"  burst 2: booked {len(held)} in {took:.2f}s; worker SIGKILLed"
        f" {min(h.expires_at for h in held) - killed_at:.2f}s before the first deadline"
    )
    worker.close()
    restarted = WorkerProcess(env)
    restarted.start()
    print(f"    worker restarted after {time.time() - killed_at:.2f}s down")
    return restarted


async def main(count: int, concurrency: int) -> int:
    run = secrets.token_hex(4)
    base_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cinema")
    dsn = f"{_base(base_url)}/cinema_bench_{run}"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"cinemabench:{run}:"
    await migrate(dsn)
    env = worker_env(dsn, redis_url, JWT_SECRET, prefix, expiry_reconcile_seconds=30)
    port = free_port()
    api_proc = _start_api(env, port)
    worker = WorkerProcess(env)
    rds = aioredis.Redis.from_url(redis_url)
    conn = await asyncpg.connect(dsn)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    all_ok = True
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(session, url)
        staff, tokens = await seed_users(dsn, 50, JWT_SECRET)
        api = ApiClient(url, session, staff)
        worker.start()
        print(
            f"expiry burst: {count} bookings, HOLD_TTL_SECONDS={TTL}, {concurrency} in flight;"
            f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )

        held, screening_id, took = await _burst(api, tokens, count, concurrency)
        print(f"  burst 1: booked {len(held)} in {took:.2f}s ({len(held) / took:.0f}/s)")
        cancel, redis_late = await _watch(conn, rds, prefix, screening_id, held)
        all_ok &= _report("worker running throughout", count, cancel, redis_late)
        all_ok &= await _all_free(api, screening_id, held, count)

        held, screening_id, took = await _burst(api, tokens, count, concurrency)
        worker = _kill_and_restart(worker, env, held, took)
        cancel, redis_late = await _watch(conn, rds, prefix, screening_id, held)
        all_ok &= _report("worker SIGKILLed and restarted", count, cancel, redis_late)
        all_ok &= await _all_free(api, screening_id, held, count)
        summary = [line for line in worker.output().splitlines() if "expiry summary" in line]
        worker.terminate()
        if summary:
            print("    restarted worker's log:", summary[-1].split("expiry summary: ")[-1])
    finally:
        worker.close()
        api_proc.terminate()
        api_proc.wait(timeout=20)
        await session.close()
        await conn.close()
        async for key in rds.scan_iter(match=prefix + "*", count=1000):
            await rds.delete(key)
        await rds.aclose()
        await drop_database(dsn)
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    print("RESULT:", "all ended within 2 s of their deadlines" if all_ok else "TARGET MISSED")
    return 0 if all_ok else 1


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bookings", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args(argv)
    return asyncio.run(main(args.bookings, args.concurrency))


if __name__ == "__main__":
    raise SystemExit(cli())
