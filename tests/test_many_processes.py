"""Many processes on one Redis Cluster: two `cinema serve --workers 2` (4 API processes on two
ports) behind nginx (the compose stack's template, as tests/test_deploy.py renders it), and
two `cinema worker`. The 1,000-way hot seat, every expiry exactly once, and an onsale during
which one API server and one worker are killed. Invariants read from PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from cinema.store.migrations import migrate
from cinema.store.pool import drop_database
from tests.client import ApiClient, Reply, wait_for
from tests.cluster_fixtures import RedisClusterProcs
from tests.conftest import JWT_SECRET, Users
from tests.payment_fixtures import STRIPE_KEY, WEBHOOK_SECRET, deliver, paid_event
from tests.processes import ServerProcess
from tests.test_deploy import NGINX, Nginx, launch_nginx, stop
from tests.test_race import race, statuses
from tests.workerproc import WorkerProcess, worker_env

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

TTL = 8  # seconds a hold lasts here: the expiries fall due within the test


@dataclass
class Stack:
    nginx: Nginx
    servers: list[ServerProcess]
    workers: list[WorkerProcess]
    database_url: str
    workdir: Path
    env: dict[str, str]
    users: Users
    killed: list[Any] = field(default_factory=list)

    def client(self, session: aiohttp.ClientSession, staff: str) -> ApiClient:
        return ApiClient(self.nginx.url, session, staff)


@pytest.fixture(scope="module")
def stack(
    redis_cluster: RedisClusterProcs, database_url: str, redis_prefix: str, localstripe_url: str
) -> Iterator[Stack]:
    prefix = f"{redis_prefix}mp{secrets.token_hex(3)}:"
    # A database of its own: the workers' reconcilers end every overdue booking they find,
    # and the expiry count must be this module's bookings only.
    database_url = f"{database_url}_many"
    workdir = Path(tempfile.mkdtemp(prefix="cinema-many-"))
    settings = {
        "REDIS_URL": redis_cluster.url,
        "REDIS_CLUSTER": "1",
        "REDIS_KEY_PREFIX": prefix,
        "HOLD_TTL_SECONDS": str(TTL),
        "DB_POOL_MAX": "8",  # 4 API processes and 2 workers share PostgreSQL with others
        "EXPIRY_RECONCILE_SECONDS": "5",  # catches the tasks a killed worker held
        "FOLLOW_UPS": "inprocess",
        # A loaded machine must not lose expiry schedules to a 1 s write timeout.
        "REDIS_TIMEOUT_SECONDS": "2",
        # Payments on: every booking gets an intent, webhooks are verified and applied.
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": localstripe_url,
    }
    # Each thing started registers its own stop at once, and every stop runs even if an
    # earlier one (or a start) failed: no server outlives the module.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        cleanup.callback(lambda: asyncio.run(drop_database(database_url)))
        asyncio.run(migrate(database_url))
        servers = []
        for _ in range(2):
            servers.append(ServerProcess(workdir, database_url, prefix, workers=2, **settings))
            cleanup.callback(servers[-1].close)
        workers = []
        for _ in range(2):
            workers.append(
                WorkerProcess(_worker_env(database_url, redis_cluster.url, prefix, settings))
            )
            cleanup.callback(workers[-1].close)
        for server in servers:
            server.wait_ready(within=60)
        for worker in workers:
            worker.start(timeout=60)
        nginx = launch_nginx("; server ".join(f"127.0.0.1:{s.port}" for s in servers))
        cleanup.callback(shutil.rmtree, nginx.folder, ignore_errors=True)
        cleanup.callback(stop, nginx.process, signal.SIGQUIT)
        yield Stack(nginx, servers, workers, database_url, workdir, settings, Users(database_url))


def _worker_env(
    database_url: str, redis_url: str, prefix: str, settings: dict[str, str]
) -> dict[str, str]:
    return worker_env(
        database_url,
        redis_url,
        JWT_SECRET,
        prefix,
        # DEBUG: each expiry task run names its booking (counted per booking below)
        **{k.lower(): v for k, v in settings.items() if k != "REDIS_URL"},
        log_level="DEBUG",
    )


async def _session() -> aiohttp.ClientSession:
    # nginx has 2 x 1024 worker connections, two per proxied request: stay under them.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=400))


async def _wait_nginx(api: ApiClient) -> None:
    async def up() -> bool:
        try:
            return (await api.get("/health")).status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(up, within=20, what="nginx and the API")


async def test_thousand_way_hot_seat_through_nginx_one_winner(stack: Stack) -> None:
    staff = await stack.users.one(staff=True)
    async with await _session() as session:
        api = stack.client(session, staff)
        await _wait_nginx(api)
        screening = await api.new_screening()
        tokens = await stack.users.create(1000)
        seat = screening.seat_ids[0]
        replies = await race([api], tokens, screening.id, [[seat]] * 1000)
    odd = [r for r in replies if r.status not in (201, 409)]
    if odd:
        logs = "\n".join(
            line for s in stack.servers for line in s.output().splitlines() if "ERROR" in line
        )
        print(f"odd replies: {odd[:3]}\n{stack.nginx.log()[-2000:]}\n{logs}")
    codes = statuses(replies)
    print(f"1,000-way hot seat through nginx: {dict(codes)}")
    assert set(codes) == {201, 409} and codes[201] + codes[409] == 1000, codes
    # One winner at a time: a hold lasts TTL seconds here, shorter than a loaded machine may
    # take to answer all 1,000, so a later buyer may win the seat after the first hold
    # expired, never while it stood.
    holds = await _holds_of(stack.database_url, screening.id)
    assert len(holds) == codes[201]
    for earlier, later in itertools.pairwise(holds):
        assert later["created_at"] >= earlier["expires_at"], (earlier, later)
    assert len(await _reservations(stack.database_url, screening.id)) <= 1


async def test_every_expiry_fires_exactly_once_over_two_workers(stack: Stack) -> None:
    staff = await stack.users.one(staff=True)
    async with await _session() as session:
        api = stack.client(session, staff)
        await _wait_nginx(api)

        async def nothing_pending() -> bool:  # the hot seat's winner, say
            return await _pending(stack.database_url) == 0

        await wait_for(nothing_pending, within=TTL + 30, what="earlier holds to end")
        await asyncio.sleep(1)  # their expiries counted
        before = _expired_total(stack.workers)
        screenings = [await api.new_screening() for _ in range(6)]
        tokens = await stack.users.create(60)
        booked = await asyncio.gather(
            *(
                api.book(t, screenings[i % 6].id, [screenings[i % 6].seat_ids[i // 6]])
                for i, t in enumerate(tokens)
            )
        )
    assert statuses(booked) == {201: 60}, statuses(booked)
    ids = [b.body["id"] for b in booked]

    async def all_ended() -> bool:
        return await _pending(stack.database_url, ids) == 0

    await wait_for(all_ended, within=TTL + 30, what="all 60 bookings to expire")

    async def all_counted() -> bool:
        return _expired_total(stack.workers) - before >= 60

    await wait_for(all_counted, within=10, what="the workers to count 60 expiries")
    await asyncio.sleep(2)  # a duplicate run would land within a scheduler tick or two
    ended = _expired_total(stack.workers) - before
    runs = _runs_per_booking(stack.workers, ids)
    once, twice = (sum(1 for n in runs.values() if n == k) for k in (1, 2))
    print(
        f"expiries counted by the two workers: {ended}; bookings whose task ran once: {once},"
        f" never (schedule lost, the reconciler ended it): {60 - len(runs)}, twice: {twice}"
    )
    assert ended == 60  # each booking ended once: none twice, none missed
    # and no booking's task ran twice (both schedulers see every schedule; a second run,
    # expired or no-op, would be logged under its id too)
    assert all(n == 1 for n in runs.values()), runs
    rows = await _bookings(stack.database_url, ids)
    assert {(r["status"], r["cancel_reason"]) for r in rows} == {("CANCELLED", "expired")}


async def test_every_webhook_is_applied_once_whichever_process_gets_it(stack: Stack) -> None:
    """Each payment event delivered four times at once through nginx (round robin over the
    two servers): one delivery confirms, the others are duplicates."""
    staff = await stack.users.one(staff=True)
    async with await _session() as session:
        api = stack.client(session, staff)
        await _wait_nginx(api)
        screening = await api.new_screening()
        tokens = await stack.users.create(8)
        booked = [
            await api.book(t, screening.id, [screening.seat_ids[i]]) for i, t in enumerate(tokens)
        ]
        assert statuses(booked) == {201: 8}, booked
        events = [paid_event(b.body, event_id=f"evt_many_{b.body['id']}") for b in booked]
        replies = await asyncio.gather(
            *(deliver(api, body, header) for body, header in events for _ in range(4))
        )
    outcomes = [(r.status, r.body.get("outcome")) for r in replies]
    print(f"webhooks delivered 4x each: {dict(Counter(outcomes))}")
    assert outcomes.count((200, "confirmed")) == 8, outcomes
    # the other 24 change nothing (recorded already, or the booking is past that state)
    assert all(o in {(200, "duplicate"), (200, "ignored")} for o in outcomes if o[1] != "confirmed")
    ids = [b.body["id"] for b in booked]
    rows = await _bookings(stack.database_url, ids)
    assert {r["status"] for r in rows} == {"CONFIRMED"}
    conn = await asyncpg.connect(stack.database_url)
    try:
        recorded = await conn.fetchval(
            "SELECT count(*) FROM payment_events WHERE event_id LIKE 'evt_many_%'"
        )
    finally:
        await conn.close()
    assert recorded == 8


async def test_onsale_with_an_api_server_and_a_worker_killed_loses_no_booking(
    stack: Stack,
) -> None:
    """Buyers retry with their Idempotency-Key until they get 201 or 409 (nginx answers a
    JSON 503 for a request that reached the killed server)."""
    staff = await stack.users.one(staff=True)
    async with await _session() as session:
        api = stack.client(session, staff)
        await _wait_nginx(api)
        screenings = [await api.new_screening() for _ in range(10)]
        tokens = await stack.users.create(300)
        answers: dict[int, Reply] = {}
        retried = 0

        async def buyer(i: int) -> None:
            nonlocal retried
            screening = screenings[i % 10]
            pair = (i // 10) % 5  # 30 buyers a screening over its 5 pairs of seats
            seats = screening.seat_ids[2 * pair : 2 * pair + 2]
            await asyncio.sleep((i // 30) * 0.3)  # ten waves over three seconds
            key = f"onsale-{i}"
            for _ in range(40):
                try:
                    reply = await api.book(tokens[i], screening.id, seats, key=key)
                except aiohttp.ClientError:
                    reply = None
                if reply is not None and reply.status in (201, 409):
                    answers[i] = reply
                    return
                assert reply is None or reply.status == 503, reply
                retried += 1
                await asyncio.sleep(0.25)

        buying = [asyncio.create_task(buyer(i)) for i in range(300)]
        await asyncio.sleep(1.0)
        victim = stack.servers[0]
        children = victim.children()
        victim.proc.send_signal(signal.SIGKILL)
        for child in children:  # both of its API processes
            _kill(child)
        stack.workers[0].kill()
        await asyncio.gather(*buying)
    assert len(answers) == 300, f"{300 - len(answers)} buyers got no answer"
    won = {a.body["id"]: a.body["seat_ids"] for a in answers.values() if a.status == 201}
    print(f"onsale with kills: {dict(statuses(list(answers.values())))}, retries: {retried}")
    rows = await _bookings(stack.database_url, list(won))
    assert len(rows) == len(won)  # every 201 is a booking in PostgreSQL
    for screening in screenings:
        reservations = await _reservations(stack.database_url, screening.id)
        seats = [r["seat_id"] for r in reservations]
        assert len(seats) == len(set(seats)), "double booking"
        for row in reservations:
            assert row["seat_id"] in won[row["booking_id"]]  # held only by a 201's booking

    # The surviving worker ends every hold, also those whose tasks the killed one held.
    async def all_ended() -> bool:
        return await _pending(stack.database_url, list(won)) == 0

    await wait_for(all_ended, within=TTL + 40, what="the surviving worker to end every hold")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


_TASK_RUN = re.compile(r"booking (\d+) expired [0-9.]+s after|expiry task of booking (\d+):")


def _runs_per_booking(workers: list[WorkerProcess], ids: list[int]) -> Counter[int]:
    """How many expiry task runs each booking had, from both workers' DEBUG lines."""
    wanted = set(ids)
    runs: Counter[int] = Counter()
    for worker in workers:
        for match in _TASK_RUN.finditer(worker.output()):
            booking_id = int(match.group(1) or match.group(2))
            if booking_id in wanted:
                runs[booking_id] += 1
    return runs


def _expired_total(workers: list[WorkerProcess]) -> float:
    total = 0.0
    for worker in workers:
        if worker.proc is not None and worker.proc.poll() is None:
            total += worker.metric("cinema_bookings_expired_total")
    return total


async def _reservations(database_url: str, screening_id: int) -> list[Any]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT seat_id, booking_id FROM reservations"
                " WHERE screening_id = $1 AND status <> 'CANCELLED' ORDER BY seat_id",
                screening_id,
            )
        )
    finally:
        await conn.close()


async def _holds_of(database_url: str, screening_id: int) -> list[Any]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT id, created_at, expires_at FROM bookings WHERE screening_id = $1"
                " ORDER BY created_at",
                screening_id,
            )
        )
    finally:
        await conn.close()


async def _bookings(database_url: str, ids: list[int]) -> list[Any]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT id, status, cancel_reason FROM bookings WHERE id = ANY($1)", ids
            )
        )
    finally:
        await conn.close()


async def _pending(database_url: str, ids: list[int] | None = None) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM bookings WHERE status = 'PENDING'"
                " AND ($1::bigint[] IS NULL OR id = ANY($1))",
                ids,
            )
        )
    finally:
        await conn.close()
