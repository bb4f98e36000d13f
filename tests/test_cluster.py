"""REDIS_CLUSTER=1 against a real 3-master/3-replica Redis Cluster (tests/cluster_fixtures.py):
the seat filter, rate limits, live seat status, the Taskiq broker and schedules, a payment.
Every test ends with what PostgreSQL says."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from cinema.holds import RedisSeatHolds, close_redis, create_redis, seat_key
from cinema.settings import SettingsError, load_settings
from tests.client import ApiClient, wait_for
from tests.cluster_fixtures import RedisClusterProcs
from tests.conftest import JWT_SECRET, AppFactory, Users
from tests.payment_fixtures import CARD_OK, LocalStripe, PayApiFactory, wait_status
from tests.sse import open_stream
from tests.test_race import Counted, live_reservations, race, statuses
from tests.workerproc import WorkerProcess, worker_env


def cluster_settings(cluster: RedisClusterProcs, **extra: Any) -> dict[str, Any]:
    return {"redis_url": cluster.url, "redis_cluster": True, **extra}


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}cl{secrets.token_hex(3)}:"


@pytest.fixture
async def crds(redis_cluster: RedisClusterProcs) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url)
    yield client
    await client.aclose()


@pytest.fixture
async def cluster_api(
    make_api: AppFactory, redis_cluster: RedisClusterProcs, prefix: str
) -> ApiClient:
    # A generous timeout: the test counts the losers the filter turns away (a read lapsing
    # on a loaded machine rightly sends requests to PostgreSQL instead).
    return await make_api(
        **cluster_settings(redis_cluster, redis_timeout_seconds=5.0, redis_key_prefix=prefix)
    )


async def test_hot_seat_on_the_cluster_the_filter_turns_losers_away(
    cluster_api: ApiClient,
    users: Users,
    database_url: str,
    crds: RedisCluster,
    prefix: str,
) -> None:
    screening = await cluster_api.new_screening()
    tokens = await users.create(100)
    seat = screening.seat_ids[0]
    counted = Counted()
    replies = await race([cluster_api], tokens, screening.id, [[seat]] * 100)
    assert statuses(replies) == {201: 1, 409: 99}
    assert counted["redis"] == 99 and counted["postgres"] == 0
    assert counted["fallbacks"] == 0
    rows = await live_reservations(database_url, screening.id)
    assert [r["seat_id"] for r in rows] == [seat]
    assert await crds.exists(seat_key(prefix, screening.id, seat)) == 1


async def test_many_screenings_spread_over_the_masters_sell_each_seat_once(
    cluster_api: ApiClient,
    users: Users,
    database_url: str,
    redis_cluster: RedisClusterProcs,
    prefix: str,
) -> None:
    screenings = [await cluster_api.new_screening() for _ in range(6)]
    nodes = {
        redis_cluster.master_of_slot(key_slot(seat_key(prefix, s.id, 0).encode()))
        for s in screenings
    }
    tokens = await users.create(120)
    # Overlapping pairs: 20 buyers per screening over its first 3 seats.
    seat_sets = [[s.seat_ids[i % 2], s.seat_ids[i % 2 + 1]] for s in screenings for i in range(20)]
    replies = []
    for n, screening in enumerate(screenings):
        replies += await race(
            [cluster_api],
            tokens[n * 20 : (n + 1) * 20],
            screening.id,
            seat_sets[n * 20 : (n + 1) * 20],
        )
    assert all(r.status in (201, 409) for r in replies), statuses(replies)
    for screening in screenings:
        rows = await live_reservations(database_url, screening.id)
        seats = [r["seat_id"] for r in rows]
        assert len(seats) == len(set(seats)) == 2  # one winner per screening
    assert len(nodes) >= 2, "the screenings landed on one master only"


async def test_rate_limit_counts_on_the_cluster(
    make_api: AppFactory,
    redis_cluster: RedisClusterProcs,
    users: Users,
    prefix: str,
    crds: RedisCluster,
    database_url: str,
) -> None:
    api = await make_api(
        **cluster_settings(redis_cluster, redis_key_prefix=prefix, rate_limit_bookings_per_minute=2)
    )
    screening = await api.new_screening()
    token = await users.one()
    seats = screening.seat_ids[:3]
    codes = [(await api.book(token, screening.id, [s])).status for s in seats]
    assert codes == [201, 201, 429]
    # The count and the claim ran at once on their own nodes: the 429's claim was released.
    assert await crds.exists(seat_key(prefix, screening.id, seats[2])) == 0
    rows = await live_reservations(database_url, screening.id)
    assert sorted(r["seat_id"] for r in rows) == sorted(seats[:2])


async def test_live_status_over_sharded_pub_sub(
    make_api: AppFactory, redis_cluster: RedisClusterProcs, users: Users, prefix: str
) -> None:
    api = await make_api(
        **cluster_settings(redis_cluster, redis_key_prefix=prefix, sse_reconcile_seconds=3600)
    )
    screenings = [await api.new_screening() for _ in range(3)]  # more than one shard
    streams = [await open_stream(api.session, api.base_url, s.id) for s in screenings]
    for stream in streams:
        await stream.until(lambda s: bool(s.seats), what="the first resync")
    buyer = await users.one()
    for screening, stream in zip(screenings, streams, strict=True):
        seats = screening.seat_ids[:2]
        assert (await api.book(buyer, screening.id, seats)).status == 201
        await stream.until(
            lambda s, seats=seats: all(s.seats[x] == "LOCKED" for x in seats),
            within=5,
            what="the hold over SSUBSCRIBE",
        )
        assert stream.seats == await api.seat_statuses(screening.id)
        stream.close()


@pytest.fixture
def cluster_worker(
    database_url: str, redis_cluster: RedisClusterProcs, prefix: str
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**settings: Any) -> WorkerProcess:
        settings.setdefault("expiry_reconcile_seconds", 3600)  # the task path does the work
        env = worker_env(
            database_url, redis_cluster.url, JWT_SECRET, prefix, redis_cluster=1, **settings
        )
        worker = WorkerProcess(env)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.kill()
        print(f"--- worker log ---\n{worker.output()}")
        worker.close()


async def test_expiry_task_runs_through_the_cluster_broker(
    make_api: AppFactory,
    redis_cluster: RedisClusterProcs,
    users: Users,
    prefix: str,
    cluster_worker: Callable[..., WorkerProcess],
    crds: RedisCluster,
) -> None:
    worker = cluster_worker()

    async def start_up_sweeps_done() -> bool:
        return worker.metric("cinema_expiry_reconciliations_total") >= 2

    await wait_for(start_up_sweeps_done, what="the worker's start-up sweeps")
    api = await make_api(
        **cluster_settings(redis_cluster, redis_key_prefix=prefix, hold_ttl_seconds=2)
    )
    alice, bob = await users.create(2)
    screenings = [await api.new_screening() for _ in range(3)]
    booked = [await api.book(alice, s.id, [s.seat_ids[0]]) for s in screenings]
    assert [b.status for b in booked] == [201, 201, 201], booked

    async def all_expired() -> bool:
        for b in booked:
            reply = await api.get(f"/api/bookings/{b.body['id']}/", token=alice)
            if reply.body["status"] != "CANCELLED":
                return False
        return True

    await wait_for(all_expired, within=20, what="the bookings to expire")

    async def keys_gone() -> bool:
        keys = [seat_key(prefix, s.id, s.seat_ids[0]) for s in screenings]
        return sum([await crds.exists(k) for k in keys]) == 0

    await wait_for(keys_gone, within=5, what="the seat keys to be released")

    async def counted() -> bool:
        return worker.metric("cinema_bookings_expired_total") >= 3

    await wait_for(counted, within=5, what="the expiries to be counted")
    # The scheduled tasks did it (the reconciler sleeps for an hour after start-up).
    assert worker.metric("cinema_booking_expiry_lateness_seconds_count", path="task") == 3
    for screening in screenings:
        assert (await api.book(bob, screening.id, [screening.seat_ids[0]])).status == 201


async def test_card_payment_on_the_cluster(
    make_pay_api: PayApiFactory,
    stripe_fake: LocalStripe,
    redis_cluster: RedisClusterProcs,
    users: Users,
    prefix: str,
    crds: RedisCluster,
    database_url: str,
) -> None:
    pay = await make_pay_api(**cluster_settings(redis_cluster, redis_key_prefix=prefix))
    await stripe_fake.send_webhooks_to(pay.webhook_url)
    api = pay.client
    screening = await api.new_screening(prices={"standard": "9.00"})
    token = await users.one()
    seats = screening.seat_ids[:2]
    reply = await api.book(token, screening.id, seats)
    assert reply.status == 201, reply
    intent_id = reply.body["payment"]["payment_intent_id"]
    assert await stripe_fake.pay(intent_id, CARD_OK) == "succeeded"
    await wait_status(api, token, reply.body["id"], "CONFIRMED")
    assert await crds.mget([seat_key(prefix, screening.id, s) for s in seats]) == [
        b"sold|",
        b"sold|",
    ]
    rows = await live_reservations(database_url, screening.id)
    assert [r["seat_id"] for r in rows] == seats
    late = await api.book(await users.one(), screening.id, seats[:1])
    assert late.status == 409


def _slot_master(cluster: RedisClusterProcs, prefix: str, screening_id: int) -> int:
    return cluster.master_of_slot(key_slot(seat_key(prefix, screening_id, 0).encode()))


async def test_master_killed_mid_race_replica_takes_over_no_double_booking(
    make_api: AppFactory,
    redis_cluster: RedisClusterProcs,
    users: Users,
    database_url: str,
    prefix: str,
) -> None:
    """300 buyers over 30 screenings, arriving over a few seconds; one master is killed
    early on. Its replica takes over; meanwhile its screenings' bookings go to PostgreSQL
    alone (the filter's fallback). No double booking, nothing but 201/409 and JSON 503s."""
    apis = [await make_api(**cluster_settings(redis_cluster, redis_key_prefix=prefix))]
    apis.append(await make_api(**cluster_settings(redis_cluster, redis_key_prefix=prefix)))
    screenings = [await apis[0].new_screening() for _ in range(30)]
    victim = _slot_master(redis_cluster, prefix, screenings[0].id)
    affected = [s for s in screenings if _slot_master(redis_cluster, prefix, s.id) == victim]
    tokens = await users.create(300)
    counted = Counted()
    start = asyncio.Event()

    async def buyer(i: int, token: str) -> Any:
        screening = screenings[i % 30]
        seats = [screening.seat_ids[i % 4], screening.seat_ids[i % 4 + 1]]
        await start.wait()
        await asyncio.sleep((i // 30) * 0.4)  # ten waves over four seconds
        return await apis[i % 2].book(token, screening.id, seats)

    tasks = [asyncio.create_task(buyer(i, t)) for i, t in enumerate(tokens)]
    await asyncio.sleep(0)
    start.set()
    await asyncio.sleep(0.3)
    redis_cluster.kill(victim)
    client = create_redis(redis_cluster.url, 0.5, cluster=True)
    probe = RedisSeatHolds(client, prefix=prefix, grace_seconds=5)
    try:
        # Before the failover: the dead master's screenings fall back, the others do not.
        down = await probe.claim(affected[0].id, [affected[0].seat_ids[9]], "probe", 5)
        unaffected = next(s for s in screenings if s not in affected)
        up = await probe.claim(unaffected.id, [unaffected.seat_ids[9]], "probe", 5)
        assert not down.reachable and up.claimed, (down, up)
        replies = await asyncio.gather(*tasks)
        codes = statuses(replies)
        assert set(codes) <= {201, 409, 503}, codes
        for reply in replies:
            if reply.status == 503:
                assert reply.body["error"]["code"], reply
                assert "Retry-After" in reply.headers
        print(f"failover race: {dict(codes)}, fell back to PostgreSQL: {counted['fallbacks']}")
        assert counted["fallbacks"] > 0, "no booking fell back to PostgreSQL"
        won = {r.body["id"]: r.body["seat_ids"] for r in replies if r.status == 201}
        for screening in screenings:
            rows = await live_reservations(database_url, screening.id)
            seats = [r["seat_id"] for r in rows]
            assert len(seats) == len(set(seats)), f"double booking in {screening.id}"
            for row in rows:
                assert row["seat_id"] in won[row["booking_id"]]
        assert sum(len(s) for s in won.values()) == sum(
            [len(await live_reservations(database_url, s.id)) for s in screenings]
        )

        # The replica took over: the cluster is healthy without the killed node, and the
        # affected screenings' losers are turned away by Redis again.
        redis_cluster.wait_healthy()
        assert _slot_master(redis_cluster, prefix, affected[0].id) != victim
        fresh = await apis[0].new_screening()
        while _slot_master(redis_cluster, prefix, fresh.id) != _slot_master(
            redis_cluster, prefix, affected[0].id
        ):
            fresh = await apis[0].new_screening()
        await asyncio.sleep(1.5)  # past the filter's down mark (1 s)
        again = Counted()
        late = await users.create(20)
        replies = await race(apis, late, fresh.id, [[fresh.seat_ids[0]]] * 20)
        assert statuses(replies) == {201: 1, 409: 19}
        assert again["redis"] == 19 and again["fallbacks"] == 0
        assert len(await live_reservations(database_url, fresh.id)) == 1
    finally:
        await close_redis(client)
        redis_cluster.restart(victim)  # it rejoins as a replica of its old slots
        redis_cluster.wait_healthy()


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"redis_cluster": "maybe"}, "REDIS_CLUSTER: must be true or false"),
        (
            {"redis_cluster": "1", "redis_url": "redis://127.0.0.1:7000/2"},
            "REDIS_CLUSTER: a Redis Cluster has only database 0",
        ),
        (
            {"redis_cluster": "1", "taskiq_redis_url": "unix:///run/redis.sock"},
            "REDIS_CLUSTER: a Redis Cluster is reached over TCP, not unix://",
        ),
        ({"db_statement_cache_size": "-1"}, "DB_STATEMENT_CACHE_SIZE: must be at least 0"),
    ],
)
def test_malformed_scaling_settings_fail_in_one_line(env: dict[str, str], line: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, jwt_secret=JWT_SECRET, **env)
    assert str(caught.value) == f"configuration error: {line}"
