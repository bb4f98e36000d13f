"""Cancelled screenings in PostgreSQL (db/013): the mark, and the bookings still to end."""

from __future__ import annotations

from datetime import datetime

from cinema.refunds.ports import LiveBooking
from cinema.store import audit
from cinema.store.bookings import CONFIRMED_SQL, PENDING_SQL
from cinema.store.pool import Pool

_LIVE = f"""
    SELECT id, status FROM bookings
    WHERE screening_id = $1 AND status IN ({PENDING_SQL}, {CONFIRMED_SQL})
    ORDER BY id LIMIT $2
"""

_CANCELLED_WITH_LIVE = f"""
    SELECT s.id FROM screenings s
    WHERE s.cancelled_at IS NOT NULL AND EXISTS (
        SELECT 1 FROM bookings b
        WHERE b.screening_id = s.id AND b.status IN ({PENDING_SQL}, {CONFIRMED_SQL}))
    ORDER BY s.id LIMIT $1
"""


class PgScreeningStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def cancel_screening(self, screening_id: int, reason: str) -> datetime | None:
        async with audit.audited(self._pool) as conn:
            cancelled_at: datetime | None = await conn.fetchval(
                "UPDATE screenings SET cancelled_at = coalesce(cancelled_at, now()),"
                " cancel_reason = coalesce(cancel_reason, $2) WHERE id = $1"
                " RETURNING cancelled_at",
                screening_id,
                reason,
            )
        return cancelled_at

    async def cancel_reason(self, screening_id: int) -> str | None:
        reason: str | None = await self._pool.fetchval(
            "SELECT cancel_reason FROM screenings WHERE id = $1", screening_id
        )
        return reason

    async def live_bookings(self, screening_id: int, limit: int) -> list[LiveBooking]:
        rows = await self._pool.fetch(_LIVE, screening_id, limit)
        return [LiveBooking(r["id"], r["status"]) for r in rows]

    async def cancelled_with_live_bookings(self, limit: int) -> list[int]:
        return [r["id"] for r in await self._pool.fetch(_CANCELLED_WITH_LIVE, limit)]
