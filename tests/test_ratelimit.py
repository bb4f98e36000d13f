"""Rate limits counted in the real Redis: 429 with Retry-After past the limit, per IP on auth,
per user on booking creation, trusted proxies, and failing open when Redis is down."""

import secrets

import pytest
import redis.asyncio as aioredis

from cinema.ratelimit import RedisRateLimiter
from tests.conftest import REDIS_URL


def own_prefix(redis_prefix):
    """A key space of this test's own (counters are per IP, and every test is 127.0.0.1)."""
    return f"{redis_prefix}{secrets.token_hex(4)}:"


def assert_429(reply, window=60):
    assert reply.status == 429, reply
    assert reply.body["error"]["code"] == "rate_limited"
    assert reply.body["error"]["message"]
    retry_after = int(reply.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert reply.body["error"]["retry_after"] == retry_after


async def login(api, email="nobody@example.com", **kw):
    return await api.post("/api/auth/token", {"email": email, "password": "x" * 8}, **kw)


async def test_auth_limit_per_client_ip(make_api, redis_prefix):
    api = await make_api(rate_limit_auth_per_minute=3, redis_key_prefix=own_prefix(redis_prefix))
    for _ in range(3):
        assert (await login(api)).status == 401
    assert_429(await login(api))
    # register is an auth endpoint too, counted against the same address
    assert_429(await api.post("/api/auth/register", {"email": "a@b.co", "password": "x" * 8}))
    # other endpoints are not limited
    assert (await api.get("/api/movies/")).status == 200


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(make_api, redis_prefix):
    untrusted = await make_api(
        rate_limit_auth_per_minute=1, redis_key_prefix=own_prefix(redis_prefix)
    )
    assert (await login(untrusted, headers={"X-Forwarded-For": "203.0.113.1"})).status == 401
    # a client cannot dodge the limit by claiming another address
    assert_429(await login(untrusted, headers={"X-Forwarded-For": "203.0.113.2"}))

    behind_proxy = await make_api(
        rate_limit_auth_per_minute=1,
        redis_key_prefix=own_prefix(redis_prefix),
        trusted_proxies="127.0.0.0/8",
    )
    # the address the proxy appended (the rightmost untrusted one) is the client
    first = {"X-Forwarded-For": "198.51.100.9, 203.0.113.1"}
    assert (await login(behind_proxy, headers=first)).status == 401
    assert_429(await login(behind_proxy, headers={"X-Forwarded-For": "203.0.113.1"}))
    assert (await login(behind_proxy, headers={"X-Forwarded-For": "203.0.113.2"})).status == 401


async def test_booking_limit_per_user(make_api, users, redis_prefix):
    api = await make_api(
        rate_limit_bookings_per_minute=2, redis_key_prefix=own_prefix(redis_prefix)
    )
    screening = await api.new_screening()
    a, b = await users.create(2)
    s1, s2, s3, s4 = screening.seat_ids[:4]
    assert (await api.book(a, screening.id, [s1])).status == 201
    assert (await api.book(a, screening.id, [s1])).status == 409  # a refusal still counts
    refused = await api.book(a, screening.id, [s2])
    assert_429(refused)
    assert (await api.seat_statuses(screening.id))[s2] == "AVAILABLE"  # nothing held
    # another user has a budget of their own
    assert (await api.book(b, screening.id, [s3])).status == 201
    assert (await api.book(b, screening.id, [s4])).status == 201


async def test_zero_turns_a_limit_off(make_api, redis_prefix):
    api = await make_api(rate_limit_auth_per_minute=0, redis_key_prefix=own_prefix(redis_prefix))
    for _ in range(5):
        assert (await login(api)).status == 401


async def test_redis_down_lets_requests_through(make_api):
    api = await make_api(rate_limit_auth_per_minute=1, redis_url="redis://127.0.0.1:1/0")
    for _ in range(3):
        assert (await login(api)).status == 401  # not 429, and not 5xx


async def test_window_resets(redis_prefix):
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        limiter = RedisRateLimiter(client, prefix=own_prefix(redis_prefix), window_seconds=0.3)
        assert (await limiter.hit("t", "s", 1)).allowed
        refused = await limiter.hit("t", "s", 1)
        assert not refused.allowed and refused.retry_after_seconds == 1

        async def reset():
            return (await limiter.hit("t", "s", 1)).allowed

        from tests.client import wait_for

        await wait_for(reset, within=5)
    finally:
        await client.aclose()


@pytest.mark.parametrize("limit", [5])
async def test_concurrent_hits_never_exceed_the_limit(redis_prefix, limit):
    import asyncio

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        limiter = RedisRateLimiter(client, prefix=own_prefix(redis_prefix))
        verdicts = await asyncio.gather(*(limiter.hit("t", "u", limit) for _ in range(50)))
        assert sum(v.allowed for v in verdicts) == limit
    finally:
        await client.aclose()
