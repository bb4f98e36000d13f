"""Every test run gets its own PostgreSQL database and Redis key prefix, removed afterwards."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from cinema.app import init_app
from cinema.auth.model import Role
from cinema.auth.passwords import hash_password_sync
from cinema.auth.tokens import Principal, TokenIssuer
from cinema.settings import Settings
from cinema.store.migrations import migrate
from cinema.store.pool import Pool, create_pool, drop_database
from cinema.store.users import PgUserStore
from tests.client import ApiClient

BASE_DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cinema")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# random (a fixed one is refused), and over 64 bytes (HS512)
JWT_SECRET = "test-secret-" + secrets.token_urlsafe(48)
RUN_ID = secrets.token_hex(4)
_PASSWORD_HASH = hash_password_sync("correct horse battery")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# A CI job cancelled or timed out sends SIGTERM, which by default ends the run at once and
# leaves the servers fixtures started (a Redis Cluster, PgBouncer, API processes) running.
# As an interrupt, pytest tears its fixtures down first.
signal.signal(signal.SIGTERM, _interrupt)


def _database_url() -> str:
    base, _, _ = BASE_DATABASE_URL.rpartition("/")
    return f"{base}/cinema_test_{RUN_ID}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = _database_url()
    asyncio.run(migrate(url))
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"cinematest:{RUN_ID}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def settings(database_url: str, redis_prefix: str) -> Settings:
    return make_settings(database_url, redis_prefix)


def make_settings(database_url: str, redis_prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "jwt_secret": JWT_SECRET,
        "redis_key_prefix": redis_prefix,
        "db_pool_max": 20,
        # Off unless a test turns them on: the suite registers many users from one address.
        "rate_limit_bookings_per_minute": 0,
        "rate_limit_auth_per_minute": 0,
        # No worker runs behind most tests: tickets and intent cancels run in-process.
        # tests/test_follow_ups.py runs them through a real `cinema worker` instead.
        "follow_ups": "inprocess",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class Users:
    """Creates users straight in the database (skipping argon2's deliberate slowness)."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._tokens = TokenIssuer(JWT_SECRET, 3600)

    async def create(
        self, count: int = 1, staff: bool = False, role: Role | None = None
    ) -> list[str]:
        """`staff=True` is the old form of `role=Role.ADMIN`."""
        chosen = role or (Role.ADMIN if staff else Role.CUSTOMER)
        pool = await create_pool(self._database_url, 1, 2)
        try:
            store = PgUserStore(pool)
            tokens = []
            for _ in range(count):
                email = f"u{secrets.token_hex(6)}@example.com"
                user = await store.add_user(email, _PASSWORD_HASH, chosen)
                tokens.append(self._tokens.issue(Principal(user.id, user.is_staff, user.role)))
            return tokens
        finally:
            await pool.close()

    async def one(self, staff: bool = False, role: Role | None = None) -> str:
        return (await self.create(1, staff, role))[0]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    """A pool on the test database, for tests that look at rows directly."""
    p = await create_pool(database_url, 1, 10)
    yield p
    await p.close()


@pytest.fixture
async def rds() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def users(database_url: str) -> Users:
    return Users(database_url)


AppFactory = Callable[..., Awaitable[ApiClient]]


@pytest.fixture
async def make_api(database_url: str, redis_prefix: str, users: Users) -> AsyncIterator[AppFactory]:
    """Start a real server on loopback with settings overrides; returns a client for it."""
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []
    staff = await users.one(staff=True)

    async def factory(app: web.Application | None = None, **overrides: Any) -> ApiClient:
        # database_url= may name another way in (tests/test_pgbouncer.py: through PgBouncer)
        url = overrides.pop("database_url", database_url)
        settings = make_settings(url, redis_prefix, **overrides)
        server = TestServer(app or init_app(settings), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        sessions.append(session)
        return ApiClient(str(server.make_url("/")), session, staff)

    yield factory
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


@pytest.fixture
async def api(make_api: AppFactory) -> ApiClient:
    return await make_api()


# Fixtures of their own modules; importing them here registers them. The Redis Cluster
# (tests/test_cluster.py) and PgBouncer (tests/test_pgbouncer.py) start on first use.
from tests.cluster_fixtures import redis_cluster  # noqa: E402, F401
from tests.payment_fixtures import (  # noqa: E402, F401
    localstripe_url,
    make_pay_api,
    pay_api,
    quiet_api,
    smtp,
    stripe_fake,
)
from tests.pgbouncer_fixtures import pgbouncer  # noqa: E402, F401
