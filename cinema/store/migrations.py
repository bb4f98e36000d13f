"""Applies the numbered plain-SQL files in `db/` exactly once, even from many processes at once."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg

from cinema.store.pool import ensure_database

# db/ at the top level of the repository; a wheel carries it inside the package as cinema._db.
MIGRATIONS_DIR = files("cinema._db")
# Any fixed 64-bit number: every migrating process queues on this session-level advisory lock.
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
    """Apply pending migrations; return the names applied by this call."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for path in migration_files(directory):
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migrations (name) VALUES ($1)", path.name
                    )
                applied.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied
