"""A winner's Redis work (docs/performance.md, issue 11): the booking's rate-limit count rides
on its seat claim (one round trip), a refused request keeps no claim, and the hold extension
runs after the answer, ordered before any release of the same keys. Against the real Redis
and PostgreSQL (adapter and HTTP), plus the service's ordering on the fakes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from cinema.api.keys import BOOKINGS
from cinema.app import init_app
from cinema.booking.model import BookingStatus
from cinema.booking.service import BookingService
from cinema.catalogue.model import ScreeningSnapshot
from cinema.holds import RedisSeatHolds, seat_key
from cinema.ratelimit import UNCHECKED, RedisRateLimiter, Verdict
from tests.client import ApiClient, wait_for
from tests.conftest import REDIS_URL, AppFactory, Users, make_settings
from tests.fakes import FakeWorld
from tests.test_race import live_reservations
from tests.test_ratelimit import assert_429


class Refused(Exception):
    """What the test's judge makes of a refused verdict (the API makes a 429)."""


def judge(verdict: Verdict) -> Exception | None:
    return None if verdict.allowed else Refused(verdict.retry_after_seconds)


class CountingRedis(aioredis.Redis):
    """A client that counts the commands it sends (each one a round trip here)."""

    sent: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return await super().execute_command(*args, **options)


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}w{secrets.token_hex(3)}:"


@pytest.fixture
async def client() -> AsyncIterator[CountingRedis]:
    redis = CountingRedis.from_url(REDIS_URL)
    redis.sent = []
    yield redis
    await redis.aclose()


async def _holds(client: aioredis.Redis, prefix: str) -> RedisSeatHolds:
    holds = RedisSeatHolds(client, prefix=prefix, grace_seconds=5)
    await holds.load_scripts()
    return holds


# --- the count in the claim's round trip --------------------------------------------------


async def test_the_count_rides_on_the_claim_in_one_round_trip(
    client: CountingRedis, prefix: str
) -> None:
    holds = await _holds(client, prefix)
    limiter = RedisRateLimiter(client, prefix=prefix)
    hit = limiter.pending("bookings", "7", 5, judge)
    client.sent.clear()
    claim = await holds.claim(1, [10, 11], "tok", 2.0, hit)
    assert claim.claimed
    assert client.sent == ["EVALSHA"]  # one command: the count and the claim together
    assert hit.verdict is not None and hit.verdict.allowed and hit.verdict.checked
    await hit.admit()  # decided already: no further round trip
    assert client.sent == ["EVALSHA"]
    assert int(await client.get(f"{prefix}ratelimit:bookings:7") or 0) == 1
    assert await client.exists(seat_key(prefix, 1, 10), seat_key(prefix, 1, 11)) == 2


async def test_a_refused_count_claims_nothing(client: CountingRedis, prefix: str) -> None:
    holds = await _holds(client, prefix)
    limiter = RedisRateLimiter(client, prefix=prefix)
    first = limiter.pending("bookings", "7", 1, judge)
    assert (await holds.claim(1, [10], "tok-a", 2.0, first)).claimed
    refused = limiter.pending("bookings", "7", 1, judge)
    claim = await holds.claim(1, [11], "tok-b", 2.0, refused)
    assert not claim.claimed and claim.reachable and claim.taken == ()
    assert refused.verdict is not None and not refused.verdict.allowed
    assert 1 <= refused.verdict.retry_after_seconds <= 60
    with pytest.raises(Refused):
        await refused.admit()
    assert await client.exists(seat_key(prefix, 1, 11)) == 0  # the 429 keeps no claim
    assert await client.exists(seat_key(prefix, 1, 10)) == 1
    # the same counter as a count sent alone: the next one is refused too
    assert not (await limiter.hit("bookings", "7", 1)).allowed


async def test_taken_seats_are_named_with_the_count(client: CountingRedis, prefix: str) -> None:
    holds = await _holds(client, prefix)
    limiter = RedisRateLimiter(client, prefix=prefix)
    assert (await holds.claim(1, [12], "tok-a", 2.0)).claimed
    hit = limiter.pending("bookings", "8", 5, judge)
    claim = await holds.claim(1, [11, 12], "tok-b", 2.0, hit)
    assert claim.taken == (12,) and not claim.claimed
    assert hit.verdict is not None and hit.verdict.allowed
    assert await client.exists(seat_key(prefix, 1, 11)) == 0


async def test_redis_down_lets_the_count_through_unchecked(prefix: str) -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        holds = RedisSeatHolds(dead, prefix=prefix, grace_seconds=5)
        limiter = RedisRateLimiter(dead, prefix=prefix)
        hit = limiter.pending("bookings", "7", 1, judge)
        claim = await holds.claim(1, [10], "tok", 2.0, hit)
        assert not claim.reachable
        assert hit.verdict == UNCHECKED
        await hit.admit()  # let through, no second timeout
        # Both are skipped for a moment now; the next count is unchecked without a call.
        again = limiter.pending("bookings", "7", 1, judge)
        assert not (await holds.claim(1, [10], "tok", 2.0, again)).reachable
        await again.admit()
        assert again.verdict == UNCHECKED
    finally:
        await dead.aclose()


# --- over HTTP: a 429 keeps nothing, and every path is counted ----------------------------


async def _limited_api(make_api: AppFactory, prefix: str, **extra: Any) -> ApiClient:
    return await make_api(rate_limit_bookings_per_minute=1, redis_key_prefix=prefix, **extra)


async def test_a_429_keeps_no_claim(
    make_api: AppFactory, users: Users, prefix: str, database_url: str
) -> None:
    api = await _limited_api(make_api, prefix)
    screening = await api.new_screening()
    token = await users.one()
    s1, s2 = screening.seat_ids[:2]
    assert (await api.book(token, screening.id, [s1])).status == 201
    assert_429(await api.book(token, screening.id, [s2]))
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert await redis.exists(seat_key(prefix, screening.id, s2)) == 0
        assert await redis.exists(seat_key(prefix, screening.id, s1)) == 1
    finally:
        await redis.aclose()
    rows = await live_reservations(database_url, screening.id)
    assert [r["seat_id"] for r in rows] == [s1]


async def test_an_over_limit_request_is_429_whatever_else_is_wrong(
    make_api: AppFactory, users: Users, prefix: str
) -> None:
    api = await _limited_api(make_api, prefix)
    screening = await api.new_screening()
    token = await users.one()
    assert (await api.book(token, screening.id, [screening.seat_ids[0]])).status == 201
    assert_429(await api.book(token, screening.id, [screening.seat_ids[0]]))  # not 409
    assert_429(await api.book(token, 999_999, [1]))  # not 404
    assert_429(await api.post("/api/bookings/", {"screening_id": "x"}, token=token))  # not 400


async def test_a_bad_request_still_counts(make_api: AppFactory, users: Users, prefix: str) -> None:
    api = await _limited_api(make_api, prefix)
    screening = await api.new_screening()
    token = await users.one()
    assert (await api.book(token, 999_999, [1])).status == 404  # counted: the limit is 1
    assert_429(await api.book(token, screening.id, [screening.seat_ids[0]]))
    assert (await api.seat_statuses(screening.id))[screening.seat_ids[0]] == "AVAILABLE"


@pytest.mark.parametrize("path", ["general_admission", "filter_off"])
async def test_bookings_without_a_seat_claim_are_counted_before_the_commit(
    make_api: AppFactory, users: Users, prefix: str, database_url: str, path: str
) -> None:
    extra = {"hold_filter": "off"} if path == "filter_off" else {}
    api = await _limited_api(make_api, prefix, **extra)
    token = await users.one()
    if path == "general_admission":
        screening_id = await api.new_ga_screening(capacity=10)
        assert (await api.book_places(token, screening_id, 1)).status == 201
        assert_429(await api.book_places(token, screening_id, 1))
        assert (await api.place_counts(screening_id))["available"] == 9
    else:
        screening = await api.new_screening()
        screening_id = screening.id
        s1, s2 = screening.seat_ids[:2]
        assert (await api.book(token, screening_id, [s1])).status == 201
        assert_429(await api.book(token, screening_id, [s2]))
    assert len(await live_reservations(database_url, screening_id)) == 1


# --- the hold extension after the answer --------------------------------------------------


def _deadline(seconds: float = 600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_the_extension_extends_its_own_claim(client: CountingRedis, prefix: str) -> None:
    holds = await _holds(client, prefix)
    assert (await holds.claim(1, [10], "tok", 2.0)).claimed
    await holds.hold_until(1, [10], "tok", _deadline())
    assert await client.pttl(seat_key(prefix, 1, 10)) > 500_000


async def test_a_late_extension_takes_back_a_lapsed_claim(
    client: CountingRedis, prefix: str
) -> None:
    """The extension writes whoever holds the key (PostgreSQL says the seat is ours): an
    extension that lands after its claim window, when a loser's claim has taken the key,
    restores the filter; only a sold marker stays."""
    holds = await _holds(client, prefix)
    assert (await holds.claim(1, [10], "late", 0.05)).claimed

    async def loser_claims() -> bool:  # once the late one's window has passed
        return (await holds.claim(1, [10], "loser", 2.0)).claimed

    await wait_for(loser_claims, within=5, what="the provisional claim to lapse")
    await holds.hold_until(1, [10], "late", _deadline())
    value = await client.get(seat_key(prefix, 1, 10))
    assert value is not None and value.decode().startswith("late|")
    assert (await holds.claim(1, [10], "next", 2.0)).taken == (10,)
    await holds.mark_sold(1, [10])
    await holds.hold_until(1, [10], "late", _deadline())
    assert await client.get(seat_key(prefix, 1, 10)) == b"sold|"


async def test_the_extension_runs_after_the_answer_and_a_cancel_removes_the_key(
    make_api: AppFactory, users: Users, prefix: str, database_url: str
) -> None:
    app = init_app(make_settings(database_url, prefix))
    api = await make_api(app=app)
    bookings = app[BOOKINGS]
    screening = await api.new_screening()
    token = await users.one()
    seat = screening.seat_ids[0]
    booked = await api.book(token, screening.id, [seat])
    assert booked.status == 201

    async def extended() -> bool:
        return bookings.extending == 0

    await wait_for(extended, within=5, what="the background extension")
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        key = seat_key(prefix, screening.id, seat)
        assert await redis.pttl(key) > 60_000  # the hold's deadline, not the claim window
        cancelled = await api.delete(f"/api/bookings/{booked.body['id']}/", token=token)
        assert cancelled.status == 200
        assert await redis.exists(key) == 0
    finally:
        await redis.aclose()
    assert await live_reservations(database_url, screening.id) == []


# --- the service: order of the answer, the extension and a release ------------------------


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
def show(world: FakeWorld) -> ScreeningSnapshot:
    return world.catalogue.add_screening(("standard",) * 4, {"standard": 1000})


def _gate_extensions(world: FakeWorld) -> asyncio.Event:
    """Hold every extension back until the returned event is set."""
    gate = asyncio.Event()
    extend = world.holds.hold_until

    async def late(*args: Any) -> None:
        await gate.wait()
        await extend(*args)

    world.holds.hold_until = late  # type: ignore[method-assign]
    return gate


async def test_the_answer_does_not_wait_for_the_extension(
    world: FakeWorld, show: ScreeningSnapshot
) -> None:
    svc = world.service()
    gate = _gate_extensions(world)
    seat = show.seats[0].id
    result = await asyncio.wait_for(svc.book(1, show.screening.id, [seat]), timeout=5)
    assert svc.extending == 1  # answered, extension still to come
    gate.set()
    await svc.close()
    assert svc.extending == 0
    assert world.holds.holder(show.screening.id, seat) == result.booking.hold_token
    world.tables.assert_consistent()


async def test_a_cancel_waits_for_its_late_extension_so_the_seat_stays_free(
    world: FakeWorld, show: ScreeningSnapshot
) -> None:
    svc = world.service()
    gate = _gate_extensions(world)
    seat = show.seats[0].id
    result = await svc.book(1, show.screening.id, [seat])
    cancel = asyncio.create_task(svc.cancel(1, result.booking.id))
    for _ in range(20):  # let the cancel run as far as it can
        await asyncio.sleep(0)
    assert not cancel.done()  # its release waits for the extension under way
    assert world.tables.booking(result.booking.id).status is BookingStatus.CANCELLED
    gate.set()
    ended = await asyncio.wait_for(cancel, timeout=5)
    assert ended.status is BookingStatus.CANCELLED
    assert svc.extending == 0
    assert world.holds.holder(show.screening.id, seat) is None  # not brought back
    assert (await svc.book(2, show.screening.id, [seat])).booking.user_id == 2
    world.tables.assert_consistent()


async def test_close_drops_extensions_past_the_claim_window(
    world: FakeWorld, show: ScreeningSnapshot
) -> None:
    svc = BookingService(
        holds=world.holds,
        store=world.store,
        catalogue=world.catalogue,
        expiry=world.expiry,
        hold_ttl_seconds=900,
        claim_window_seconds=0.05,
        clock=world.clock,
    )
    _gate_extensions(world)  # never opened: Redis "hangs"
    await svc.book(1, show.screening.id, [show.seats[0].id])
    await asyncio.wait_for(svc.close(), timeout=5)
    assert svc.extending == 0
    world.tables.assert_consistent()
