"""Connection pool creation and database bootstrap."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from cinema.store.fair import FifoGate


class DatabaseUnavailable(ConnectionError):
    """PostgreSQL cannot be reached, or the connection broke under a statement: nothing is
    known to have happened, and the same request may be tried again in a moment. The store's
    one error type for every way the driver says so (the API answers it 503). A
    ConnectionError, so code that handles lost connections in general handles this one.
    `reached` is False when no connection was had at all, so no statement can have run."""

    def __init__(self, message: str, reached: bool = True) -> None:
        super().__init__(message)
        self.reached = reached


# The driver's ways of saying "this connection (or PostgreSQL itself) is gone". asyncpg raises
# several for one terminated session, depending on when the server's FATAL message and the end
# of the socket arrive: ConnectionDoesNotExistError in the middle of a statement; InterfaceError
# ("connection is closed") after it, e.g. from Transaction.__aexit__; InternalClientError
# ("cannot switch to state 12; another operation (2) is in progress") when the FATAL message
# has been read but the end of the socket not yet; the 57xxx errors (admin shutdown, crash
# shutdown, cannot connect now); and OSError or TimeoutError from the socket itself.
_BROKEN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
    OSError,
    TimeoutError,
)
# InterfaceErrors that are mistakes in our own call, not a broken connection.
_NOT_BROKEN: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.ClientConfigurationError,
)

# What the API answers 503 (the composition root hands it to the error middleware).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (DatabaseUnavailable,)


def is_broken(exc: BaseException) -> bool:
    return isinstance(exc, _BROKEN) and not isinstance(exc, _NOT_BROKEN)


class _Checkout:
    """`async with pool.acquire() as conn`: a connection on which the driver failed is
    terminated, never put back, so no later request is handed it; the error leaves as
    DatabaseUnavailable. Any other error (a constraint, a domain error) passes unchanged."""

    def __init__(self, pool: Any, gate: FifoGate) -> None:
        self._pool = pool
        self._gate = gate
        self._conn: Any = None

    async def __aenter__(self) -> Any:
        await self._gate.acquire()  # first come, first served (cinema/store/fair.py)
        try:
            self._conn = await self._pool.acquire()
        except BaseException as exc:
            self._gate.release()
            if not isinstance(exc, _BROKEN) or not is_broken(exc):
                raise
            raise DatabaseUnavailable(
                f"cannot get a database connection: {exc!r}", reached=False
            ) from exc
        return self._conn

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            await self._give_back(exc)
        finally:
            self._gate.release()  # the connection is back in asyncpg's queue by now

    async def _give_back(self, exc: BaseException | None) -> None:
        conn, self._conn = self._conn, None
        broken = exc is not None and is_broken(exc)
        if broken:
            with contextlib.suppress(asyncpg.InterfaceError):  # already closed and handed back
                conn.terminate()
        try:
            await self._pool.release(conn)
        except _BROKEN as release_exc:
            # asyncpg terminated it itself (its reset failed); report the first failure.
            if exc is None and is_broken(release_exc):
                raise DatabaseUnavailable(f"database connection lost: {release_exc!r}") from (
                    release_exc
                )
            if exc is None:
                raise
        if broken:
            assert exc is not None
            raise DatabaseUnavailable(f"database connection lost: {exc!r}") from exc


class GuardedPool:
    """The asyncpg pool as the stores use it (acquire, fetch, fetchrow, fetchval, execute),
    with every driver failure turned into DatabaseUnavailable and its connection dropped."""

    def __init__(self, pool: Any) -> None:
        self.raw = pool
        self.gate = FifoGate(int(pool.get_max_size()))

    def acquire(self) -> _Checkout:
        return _Checkout(self.raw, self.gate)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self.acquire() as conn:
            rows: list[Any] = await conn.fetch(query, *args)
            return rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return str(await conn.execute(query, *args))

    def get_size(self) -> int:
        return int(self.raw.get_size())

    def get_idle_size(self) -> int:
        return int(self.raw.get_idle_size())

    def get_max_size(self) -> int:
        return int(self.raw.get_max_size())

    async def close(self) -> None:
        await self.raw.close()


Pool = GuardedPool


CONNECT_TIMEOUT_SECONDS = 10


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Any) -> None:
    """Pooled connections never change session state (no SET, LISTEN or advisory locks; an
    open transaction is still rolled back by asyncpg itself), so the default reset query,
    one more round trip and transaction per request, buys nothing."""


async def create_pool(
    dsn: str, min_size: int, max_size: int, *, statement_cache_size: int = 100
) -> Pool:
    """`statement_cache_size=0` behind PgBouncer in transaction mode: a named prepared
    statement lives in one server connection, and the next transaction may get another."""
    raw = await asyncpg.create_pool(
        dsn,
        statement_cache_size=statement_cache_size,
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        # Only PostgreSQL's deadline matters; a stuck statement should not hang a request forever.
        command_timeout=30,
        # A new connection that takes longer than this is a PostgreSQL that is not there.
        timeout=CONNECT_TIMEOUT_SECONDS,
    )
    return GuardedPool(raw)


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
