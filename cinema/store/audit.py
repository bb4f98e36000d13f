"""The audit log in PostgreSQL: handing the actor to the triggers of db/014_b_audit.sql in
the transaction that makes the change, and reading the log back.

Two ways in, both inside the changing transaction: `audited(pool)` opens a transaction and
sets the actor first (multi-statement writes, staff writes); a one-statement write on a hot
path (a new booking, a check-in) wraps one of its arguments in `cinema_audited(value,
context)` instead, so it stays one round trip."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from cinema.audit import current_actor
from cinema.boxoffice.audit import AuditEntry, AuditFilter
from cinema.store.pool import Pool

_BIND = "SELECT cinema_audit_as($1::text::jsonb)"
_RECORD = "SELECT cinema_audit_write($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)"

_FIND = """
    SELECT id, at, actor_id, actor_role, action, booking_id, screening_id, target, target_id,
           request_id, client_addr, before, after
    FROM audit_log
    WHERE ($1::bigint IS NULL OR booking_id = $1)
      AND ($2::bigint IS NULL OR actor_id = $2)
      AND ($3::timestamptz IS NULL OR at >= $3)
      AND ($4::bigint IS NULL OR screening_id = $4)
      AND ($5::text IS NULL OR action = $5)
    ORDER BY at DESC, id DESC
    LIMIT $6 OFFSET $7
"""


def context() -> str:
    """The acting user as the `cinema.audit` setting carries it: JSON text, sent as a text
    parameter (`$n::text::jsonb`) so it needs no jsonb codec on the connection."""
    return orjson.dumps(current_actor().as_json()).decode()


async def bind(conn: Any) -> None:
    """Inside the caller's transaction: its changes are recorded as the current actor's."""
    await conn.execute(_BIND, context())


@contextlib.asynccontextmanager
async def audited(pool: Pool) -> AsyncIterator[Any]:
    """A connection in a transaction whose changes are recorded as the current actor's."""
    async with pool.acquire() as conn, conn.transaction():
        await bind(conn)
        yield conn


async def record(
    conn: Any,
    action: str,
    target: str,
    target_id: int | None,
    *,
    booking_id: int | None = None,
    screening_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """An explicit record, for an action that changes no row a trigger watches; call it in
    the transaction of the action, after `bind`."""
    await conn.execute(_RECORD, action, target, target_id, booking_id, screening_id, before, after)


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor_id=row["actor_id"],
        actor_role=row["actor_role"],
        action=row["action"],
        booking_id=row["booking_id"],
        screening_id=row["screening_id"],
        target=row["target"],
        target_id=row["target_id"],
        request_id=row["request_id"],
        client=row["client_addr"],
        before=row["before"],
        after=row["after"],
    )


class PgAuditStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def entries(self, search: AuditFilter) -> list[AuditEntry]:
        rows = await self._pool.fetch(
            _FIND,
            search.booking_id,
            search.actor_id,
            search.since,
            search.screening_id,
            search.action,
            search.limit,
            search.offset,
        )
        return [_entry(r) for r in rows]

    async def booking_entries(self, booking_id: int) -> list[AuditEntry]:
        return await self.entries(AuditFilter(booking_id=booking_id, limit=500))
