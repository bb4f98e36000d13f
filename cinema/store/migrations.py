"""Applies the numbered plain-SQL files in `db/` exactly once, even from many processes at once."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg

from cinema.store.pool import ensure_database

# db/ at the top level of the repository; a wheel carries it inside the package as cinema._db.
MIGRATIONS_DIR = files("cinema._db")
# Any fixed 64-bit number: every migrating process queues on this advisory lock (per file).
_MIGRATION_LOCK = 0x43494E454D41


def migration_files(directory: Traversable = MIGRATIONS_DIR) -> list[Traversable]:
    """The numbered `NNN_name.sql` files, in the order they are applied."""
    numbered = (
        p
        for p in directory.iterdir()
        if p.name.endswith(".sql") and p.name.split("_", 1)[0].isdigit()
    )
    return sorted(numbered, key=lambda p: p.name)


async def migrate(dsn: str, directory: Traversable = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied by this call.

    One transaction holds a transaction-scoped advisory lock from the check of what is
    applied to the end, so concurrent migrators wait for each other, also through PgBouncer
    in transaction mode (a session lock would stay on whichever server connection took it,
    and its unlock could land on another). Each file runs in a savepoint: a file that fails
    leaves the ones before it applied. No named prepared statements, for PgBouncer too."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn, statement_cache_size=0)
    applied: list[str] = []
    failure: BaseException | None = None
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for path in migration_files(directory):
                if path.name in done:
                    continue
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.execute(path.read_text())
                        await conn.execute(
                            "INSERT INTO schema_migrations (name) VALUES ($1)", path.name
                        )
                except asyncpg.PostgresError as exc:
                    failure = exc  # commit the files before it, then report it
                    break
                applied.append(path.name)
    finally:
        await conn.close()
    if failure is not None:
        raise failure
    return applied
