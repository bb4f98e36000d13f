"""REDIS_CLUSTER=1 against a real 3-master/3-replica Redis Cluster (tests/cluster_fixtures.py):
the seat filter, rate limits, live seat status, the Taskiq broker and schedules, a payment.
Every test ends with what PostgreSQL says."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from cinema.booking.ports import HoldClaim
from cinema.holds import RedisSeatHolds, close_redis, create_redis, seat_key
from cinema.live_redis import channel as live_channel
from cinema.settings import SettingsError, load_settings
from tests.client import ApiClient, Reply, Screening, wait_for
from tests.cluster_fixtures import RedisClusterProcs, SlotMigration, error_counts
from tests.conftest import JWT_SECRET, AppFactory, Users
from tests.payment_fixtures import CARD_OK, LocalStripe, PayApiFactory, wait_status
from tests.sse import Stream, open_stream
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
    # A dead master refuses at once; the live ones get time to connect on a loaded machine
    # (0.5 s failed the "up" claim in 1 of 8 runs of this file at load average 10).
    client = create_redis(redis_cluster.url, 5.0, cluster=True)
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


LARGE_HALL = {"rows": [{"label": row, "seats": 25} for row in "ABCD"]}  # 100 seats


def _other_master(cluster: RedisClusterProcs, slot: int) -> int:
    masters = cluster.masters()
    return masters[(masters.index(cluster.master_of_slot(slot)) + 1) % len(masters)]


async def _onsale(
    apis: list[ApiClient],
    tokens: list[str],
    screenings: list[Screening],
    moving: list[Screening],
    stop: asyncio.Event,
) -> list[Reply]:
    """Every buyer books one or two of a screening's first 60 seats, half the time one of
    the `moving` screenings, again and again until `stop` is set."""
    replies: list[Reply] = []

    async def buyer(n: int, token: str) -> None:
        rnd = random.Random(n)
        while not stop.is_set():
            screening = rnd.choice(moving if rnd.random() < 0.5 else screenings)
            first = rnd.randrange(59)
            seats = screening.seat_ids[first : first + 1 + n % 2]
            replies.append(await apis[n % len(apis)].book(token, screening.id, seats))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(buyer(n, t) for n, t in enumerate(tokens)))
    return replies


async def _claims_in_an_open_slot(
    probe: RedisSeatHolds, screening: Screening
) -> tuple[list[HoldClaim], HoldClaim]:
    """While the slot is MIGRATING: 20 concurrent one-seat claims of fresh seats (the source
    answers ASK, the target runs them after ASKING), and a claim of a seat the source still
    has with a fresh one (keys split over two nodes: TRYAGAIN)."""
    seats = screening.seat_ids
    fresh = await asyncio.gather(
        *(probe.claim(screening.id, [seats[71 + i]], f"ask{i}", 30) for i in range(20))
    )
    split = await probe.claim(screening.id, [seats[70], seats[95]], "split", 30)
    return list(fresh), split


async def _reshard(
    migrations: list[SlotMigration], probe: RedisSeatHolds, screening: Screening
) -> tuple[list[HoldClaim], HoldClaim, HoldClaim]:
    """Every migration step by step, the onsale going on meanwhile; `screening`'s slot is
    probed while open (ASK, TRYAGAIN) and after the move (MOVED to a stale slot map)."""
    for migration in migrations:
        await asyncio.to_thread(migration.begin)
    fresh, split = await _claims_in_an_open_slot(probe, screening)
    for migration in migrations:  # half moved: a screening's keys on two nodes
        await asyncio.to_thread(migration.move_keys, 30, 0.01)
    await asyncio.sleep(0.3)
    for migration in migrations:
        await asyncio.to_thread(migration.finish)
    await asyncio.sleep(0.5)  # sales after the move: MOVED for each stale slot map
    stale = await probe.claim(screening.id, [screening.seat_ids[96]], "stale", 30)
    return fresh, split, stale


def _redirects(cluster: RedisClusterProcs) -> Counter[str]:
    total: Counter[str] = Counter()
    for port in cluster.masters():
        total.update(error_counts(port))
    return total


async def _assert_sold_once(
    database_url: str, screenings: list[Screening], replies: list[Reply]
) -> None:
    """From PostgreSQL: no seat live twice, every live seat a 201's, as many live bookings
    as 201 answers."""
    won = {r.body["id"]: r.body["seat_ids"] for r in replies if r.status == 201}
    live_seats = 0
    for screening in screenings:
        rows = await live_reservations(database_url, screening.id)
        seats = [r["seat_id"] for r in rows]
        assert len(seats) == len(set(seats)), f"double booking in {screening.id}"
        assert all(row["seat_id"] in won[row["booking_id"]] for row in rows)
        live_seats += len(rows)
    assert live_seats == sum(len(s) for s in won.values())
    conn = await asyncpg.connect(database_url)
    try:
        live = await conn.fetchval(
            "SELECT count(*) FROM bookings WHERE screening_id = ANY($1) AND status <> 'CANCELLED'",
            [s.id for s in screenings],
        )
    finally:
        await conn.close()
    assert live == len(won)


async def test_slots_resharded_mid_onsale_at_most_503_no_double_booking(
    make_api: AppFactory,
    redis_cluster: RedisClusterProcs,
    users: Users,
    database_url: str,
    prefix: str,
) -> None:
    """24 buyers over 9 screenings while the slots of 3 of them move to another master, as
    `redis-cli --cluster reshard` moves them: SETSLOT IMPORTING/MIGRATING, keys MIGRATEd a
    few at a time, SETSLOT NODE. The cluster answers ASK, TRYAGAIN and then MOVED (counted
    from its INFO errorstats); the buyers get 201/409 (at most a JSON 503), nothing is sold
    twice, and once the slots have moved Redis decides again, without restarting the API."""
    settings = cluster_settings(redis_cluster, redis_key_prefix=prefix, redis_timeout_seconds=5.0)
    apis = [await make_api(**settings), await make_api(**settings)]
    screenings = [await apis[0].new_screening(layout=LARGE_HALL) for _ in range(9)]
    by_slot = {key_slot(seat_key(prefix, s.id, 0).encode()): s for s in screenings[:3]}
    moving = list(by_slot.values())
    migrations = [
        SlotMigration(redis_cluster, slot, _other_master(redis_cluster, slot)) for slot in by_slot
    ]
    # Its slot map is read now and never corrected by the test's traffic: a stale client.
    client = create_redis(redis_cluster.url, 5.0, cluster=True)
    probe = RedisSeatHolds(client, prefix=prefix, grace_seconds=5)
    tokens = await users.create(24)
    stop = asyncio.Event()
    sale: asyncio.Task[list[Reply]] | None = None
    try:
        await probe.open_connections(16)  # several pooled connections per node
        assert (await probe.claim(moving[0].id, [moving[0].seat_ids[70]], "seed", 60)).claimed
        before, counted = _redirects(redis_cluster), Counted()
        sale = asyncio.create_task(_onsale(apis, tokens, screenings, moving, stop))
        await asyncio.sleep(0.5)  # first sales: keys on the source masters
        fresh, split, stale = await _reshard(migrations, probe, moving[0])
        stop.set()
        replies = await sale
        fell_back = counted["fallbacks"]
        redirects = _redirects(redis_cluster) - before
    finally:
        stop.set()
        if sale is not None:  # after a failure too: no buyer left running
            await asyncio.gather(sale, return_exceptions=True)
        for migration in migrations:
            await asyncio.to_thread(migration.finish)  # also after a failure: no open slot
        await close_redis(client)
    codes = statuses(replies)
    print(f"resharding onsale: {dict(codes)}, fell back: {fell_back}, redirects: {dict(redirects)}")
    assert set(codes) <= {201, 409, 503}, codes
    for reply in replies:
        if reply.status == 503:
            assert reply.body["error"]["code"] and "Retry-After" in reply.headers, reply
    assert all(c.claimed for c in fresh), fresh  # ASK followed (ASKING on the same connection)
    assert not split.claimed and not split.reachable, split  # TRYAGAIN: PostgreSQL decides
    assert stale.claimed, stale  # MOVED: the stale slot map corrected
    assert redirects["ASK"] > 0 and redirects["TRYAGAIN"] > 0 and redirects["MOVED"] > 0
    await _assert_sold_once(database_url, screenings, replies)

    await _decided_by_redis_again(redis_cluster, migrations, apis, users, moving)


async def _decided_by_redis_again(
    cluster: RedisClusterProcs,
    migrations: list[SlotMigration],
    apis: list[ApiClient],
    users: Users,
    moving: list[Screening],
) -> None:
    """No slot left open, the moved slots' keys all on their new masters, and a 20-way race
    on each moved screening turned away by Redis there, in the same API processes."""
    assert cluster.open_slots() == []
    for migration in migrations:
        assert cluster.master_of_slot(migration.slot) == migration.target
        assert migration.keys_left() == 0
    await asyncio.sleep(1.5)  # past any filter down mark (1 s)
    again = Counted()
    for screening in moving:
        late = await users.create(20)
        replies = await race(apis, late, screening.id, [[screening.seat_ids[99]]] * 20)
        assert statuses(replies) == {201: 1, 409: 19}
    assert again["redis"] == 19 * len(moving) and again["fallbacks"] == 0


async def _ends(stream: Stream, within: float) -> bool:
    """Whether the server ends the stream (cleanly or cut off) within `within` s."""
    try:
        await stream.until(lambda s: False, within=within, what="the stream to end")
    except aiohttp.ClientError:
        return True
    except AssertionError:
        return stream.ended  # "the stream ended", not "timed out"
    return False


async def test_live_stream_follows_its_screening_to_another_master(
    make_api: AppFactory, redis_cluster: RedisClusterProcs, users: Users, prefix: str
) -> None:
    """Redis drops a shard channel's subscribers when its slot moves. The feed notices (the
    sunsubscribe it did not ask for), ends its viewers' streams so they reconnect and resync,
    and subscribes again on the new owner: a hold made after the move reaches a viewer live
    (the periodic resync is off)."""
    api = await make_api(
        **cluster_settings(redis_cluster, redis_key_prefix=prefix, sse_reconcile_seconds=3600)
    )
    screening = await api.new_screening()
    stream = await open_stream(api.session, api.base_url, screening.id)
    await stream.until(lambda s: bool(s.seats), what="the first resync")
    slot = key_slot(live_channel(prefix, screening.id).encode())
    migration = SlotMigration(redis_cluster, slot, _other_master(redis_cluster, slot))
    try:
        await asyncio.to_thread(migration.begin)
    finally:
        await asyncio.to_thread(migration.finish)
    assert await _ends(stream, within=10), "the stream outlived its channel"
    stream.close()
    again = await open_stream(api.session, api.base_url, screening.id)
    await again.until(lambda s: bool(s.seats), what="the first resync of a new viewer")
    seats = screening.seat_ids[:2]
    assert (await api.book(await users.one(), screening.id, seats)).status == 201
    await again.until(
        lambda s: all(s.seats[x] == "LOCKED" for x in seats),
        within=5,
        what="the hold over SSUBSCRIBE on the new owner",
    )
    again.close()
    assert redis_cluster.master_of_slot(slot) == migration.target


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
