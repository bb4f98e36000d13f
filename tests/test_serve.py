"""`cinema serve` as real processes: N workers on one port racing for one seat, workers that
die with their parent, and a SIGTERM that lets in-flight bookings finish (or roll back whole)."""

import asyncio
import os
import signal
from collections import Counter

import aiohttp
import asyncpg
import pytest

from tests.client import ApiClient
from tests.processes import ServerProcess, pid_alive, wait_until
from tests.test_observability import samples, value
from tests.test_race import race


@pytest.fixture
def servers(tmp_path, database_url, redis_prefix):
    started = []

    def start(workers=1, **env):
        server = ServerProcess(tmp_path, database_url, redis_prefix, workers=workers, **env)
        started.append(server)
        return server.wait_ready()

    yield start
    for server in started:
        server.close()


@pytest.fixture
async def client_for(users):
    sessions = []
    staff = await users.one(staff=True)

    def make(server):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        sessions.append(session)
        return ApiClient(server.url, session, staff)

    yield make
    for session in sessions:
        await session.close()


async def test_two_processes_one_seat_exactly_one_201(servers, client_for, users):
    server = servers(workers=2)
    assert len(server.children()) == 2
    api = client_for(server)
    screening = await api.new_screening()
    tokens = await users.create(100)
    seat = screening.seat_ids[0]

    replies = await race([api], tokens, screening.id, [[seat]] * 100)

    assert Counter(r.status for r in replies) == {201: 1, 409: 99}
    assert (await api.seat_statuses(screening.id))[seat] == "LOCKED"
    metrics = samples((await api.get("/metrics")).body)
    assert value(metrics, "cinema_bookings_created_total") == 1
    conflicts = sum(
        value(metrics, "cinema_bookings_conflicted_total", caught_by=where)
        for where in ("redis", "postgres")
    )
    assert conflicts == 99
    posts = {"method": "POST", "route": "/api/bookings/"}
    assert value(metrics, "cinema_http_requests_total", status="409", **posts) == 99
    # Both processes serve on the one port, and /metrics from either reports the sum over
    # both. Not asserted on the race: the workers share one listening socket and the one that
    # wakes first may accept the whole burst (or the other may still be starting), so ask on
    # fresh connections until each process has answered.
    served = await _until_each_process_answers(server, "/api/movies/")
    metrics = samples((await api.get("/metrics")).body)
    get_movies = {"method": "GET", "route": "/api/movies/", "status": "200"}
    assert value(metrics, "cinema_http_requests_total", **get_movies) == served

    children = server.children()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(within=30) == 0
    assert not any(pid_alive(p) for p in children)


async def _until_each_process_answers(server, path, within=30.0):
    """GET `path` on a new connection each time until every worker has logged serving it;
    returns how many GETs that took."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    sent = 0
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        while True:
            async with session.get(server.url + path) as resp:
                assert resp.status == 200
                await resp.read()
            sent += 1
            pids = {
                line["pid"]
                for line in server.log_lines()
                if line.get("event") == "request" and line.get("route") == path
            }
            if pids == set(server.children()):
                return sent
            assert loop.time() < deadline, f"only {pids} of {server.children()} answered"


async def test_workers_die_with_their_parent(servers):
    server = servers(workers=2)
    children = server.children()
    assert len(children) == 2
    server.signal(signal.SIGKILL)
    server.wait_exit()
    wait_until(lambda: not any(pid_alive(p) for p in children), within=20)


async def test_a_dead_worker_stops_the_set_with_exit_code_1(servers):
    server = servers(workers=2)
    first, second = server.children()
    os.kill(first, signal.SIGKILL)
    assert server.wait_exit(within=30) == 1
    wait_until(lambda: not pid_alive(second), within=20)
    assert f"worker {first} exited with -9" in server.output()


async def _lock_seat(database_url, seat_id):
    conn = await asyncpg.connect(database_url)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT id FROM seats WHERE id = $1 FOR UPDATE", seat_id)
    return conn, tx


async def _waiting_on_locks(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    finally:
        await conn.close()


async def _rows(database_url, screening_id):
    conn = await asyncpg.connect(database_url)
    try:
        bookings = await conn.fetchval(
            "SELECT count(*) FROM bookings WHERE screening_id = $1", screening_id
        )
        reservations = await conn.fetchval(
            "SELECT count(*) FROM reservations WHERE screening_id = $1", screening_id
        )
        return bookings, reservations
    finally:
        await conn.close()


async def _until(predicate, within=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _refuses_connections(url):
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/health") as resp:
            await resp.read()
    except aiohttp.ClientConnectionError:
        return True
    return False


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_lets_an_in_flight_booking_finish(
    servers, client_for, users, database_url, workers
):
    server = servers(workers=workers, SHUTDOWN_TIMEOUT_SECONDS="30")
    api = client_for(server)
    screening = await api.new_screening()
    token = await users.one()
    seat = screening.seat_ids[0]
    conn, tx = await _lock_seat(database_url, seat)
    try:
        booking = asyncio.create_task(api.book(token, screening.id, [seat]))
        await _until(lambda: _waiting_on_locks(database_url))  # the booking is in flight
        server.signal(signal.SIGTERM)
        await _until(lambda: _refuses_connections(server.url))  # shutdown has begun
        assert not booking.done()
    finally:
        await tx.rollback()
        await conn.close()
    reply = await booking
    assert reply.status == 201, reply
    assert server.wait_exit(within=30) == 0
    assert await _rows(database_url, screening.id) == (1, 1)


async def test_sigterm_past_the_deadline_rolls_the_booking_back(
    servers, client_for, users, database_url
):
    server = servers(workers=1, SHUTDOWN_TIMEOUT_SECONDS="1")
    api = client_for(server)
    screening = await api.new_screening()
    token = await users.one()
    seat = screening.seat_ids[0]
    conn, tx = await _lock_seat(database_url, seat)
    try:
        booking = asyncio.create_task(api.book(token, screening.id, [seat]))
        await _until(lambda: _waiting_on_locks(database_url))
        server.signal(signal.SIGTERM)
        # the process gives up on the request after its deadline and exits, lock still held
        await asyncio.get_running_loop().run_in_executor(None, server.wait_exit, 30)
        assert server.proc.returncode == 0
    finally:
        await tx.rollback()
        await conn.close()
    try:
        reply = await booking
    except aiohttp.ClientError:
        pass  # the connection was closed without an answer
    else:
        assert reply.status >= 500, reply
    await _until(lambda: _no_waiters(database_url))
    assert await _rows(database_url, screening.id) == (0, 0)  # nothing half-written


async def _no_waiters(database_url):
    return await _waiting_on_locks(database_url) == 0


async def test_an_operators_metrics_folder_is_emptied_at_start(servers, client_for, tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    stale = folder / "counter_999999.db"
    stale.write_bytes(b"left over from the previous run")
    server = servers(workers=2, PROMETHEUS_MULTIPROC_DIR=str(folder))
    assert not stale.exists()
    api = client_for(server)
    assert (await api.get("/api/movies/")).status == 200
    metrics = samples((await api.get("/metrics")).body)
    get_movies = {"method": "GET", "route": "/api/movies/", "status": "200"}
    assert value(metrics, "cinema_http_requests_total", **get_movies) == 1
    assert any(p.name.startswith("counter_") for p in folder.iterdir())
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert folder.exists()  # the operator's folder is left in place
