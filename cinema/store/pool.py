"""Connection pool creation and database bootstrap."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

Pool = Any  # asyncpg ships no type information; see pyproject's mypy override.

# The driver's ways of saying "PostgreSQL cannot be reached right now".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Any) -> None:
    """Pooled connections never change session state (no SET, LISTEN or advisory locks; an
    open transaction is still rolled back by asyncpg itself), so the default reset query,
    one more round trip and transaction per request, buys nothing."""


async def create_pool(dsn: str, min_size: int, max_size: int) -> Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        # Only PostgreSQL's deadline matters; a stuck statement should not hang a request forever.
        command_timeout=30,
    )


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


async def ensure_database(dsn: str) -> None:
    """Create the database named in `dsn` if it does not exist yet (a newcomer's first run)."""
    name = database_name(dsn)
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(_with_database(dsn, "postgres"))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another process created it at the same moment (either error, by timing)
        finally:
            await admin.close()
    else:
        await conn.close()


async def drop_database(dsn: str) -> None:
    name = database_name(dsn)
    admin = await asyncpg.connect(_with_database(dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def pinger(pool: Pool) -> Any:
    """A readiness probe for the pool."""

    async def ping() -> None:
        await pool.fetchval("SELECT 1")

    return ping
