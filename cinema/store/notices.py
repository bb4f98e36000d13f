"""Screening-cancellation notices in PostgreSQL (db/015): which bookings are owed the email,
the sender's lease, and the mark written right after the SMTP server accepted it.

A booking is owed the notice once the cancellation has ended it: a PENDING one cancelled
with reason `screening_cancelled`, or a paid one with a refund of source `screening` that
the provider has taken (or that failed for good: the customer is still told). The facts are
the ones the ending transactions wrote, so nothing here needs writing in them; the notice row
is created by its first sender. No lock is taken but the notice row's own."""

from __future__ import annotations

from typing import Any

from cinema.refunds.model import SCREENING_CANCELLED_REASON, RefundSource
from cinema.refunds.ports import CancellationNotice
from cinema.store.bookings import CANCELLED_SQL, CONFIRMED_SQL, PENDING_SQL
from cinema.store.pool import Pool

_SCREENING = f"'{RefundSource.SCREENING.value}'"

# Ended by the cancellation, and not waiting for the provider to take its refund.
_OWED = f"""
    b.status NOT IN ({PENDING_SQL}, {CONFIRMED_SQL})
    AND ((b.status = {CANCELLED_SQL} AND b.cancel_reason = '{SCREENING_CANCELLED_REASON}')
         OR EXISTS (SELECT 1 FROM refunds r WHERE r.booking_id = b.id AND r.source = {_SCREENING}))
    AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.booking_id = b.id AND r.source = {_SCREENING}
                      AND r.status = 'pending' AND r.provider_refund_id IS NULL)
"""

_CLAIM = f"""
    INSERT INTO cancellation_notices AS n (booking_id, screening_id, attempts, claimed_until)
    SELECT b.id, b.screening_id, 1, now() + make_interval(secs => $2)
    FROM bookings b JOIN screenings s ON s.id = b.screening_id
    WHERE b.id = $1 AND s.cancelled_at IS NOT NULL AND {_OWED}
    ON CONFLICT (booking_id) DO UPDATE
        SET attempts = n.attempts + 1, claimed_until = EXCLUDED.claimed_until
        WHERE n.sent_at IS NULL AND (n.claimed_until IS NULL OR n.claimed_until < now())
    RETURNING n.booking_id
"""

_NOTICE = f"""
    SELECT b.id, b.reference, b.currency, b.payment_status, u.email, m.title, s.starts_at,
           coalesce(s.cancel_reason, 'the screening was cancelled') AS reason,
           ARRAY(SELECT r.id FROM refunds r WHERE r.booking_id = b.id AND r.source = {_SCREENING}
                 ORDER BY r.id) AS refund_ids,
           (SELECT coalesce(sum(r.amount_minor), 0) FROM refunds r WHERE r.booking_id = b.id
              AND r.source = {_SCREENING} AND r.status <> 'failed') AS refunded,
           (SELECT coalesce(sum(r.amount_minor), 0) FROM refunds r WHERE r.booking_id = b.id
              AND r.source = {_SCREENING} AND r.status = 'failed') AS refund_failed
    FROM bookings b JOIN users u ON u.id = b.user_id
    JOIN screenings s ON s.id = b.screening_id JOIN movies m ON m.id = s.movie_id
    WHERE b.id = $1
"""

# One statement: the notice is sent, and the refunds it told of need no email of their own.
_MARK = """
    WITH sent AS (
        UPDATE cancellation_notices SET sent_at = now(), claimed_until = NULL
        WHERE booking_id = $1 RETURNING booking_id
    )
    UPDATE refunds SET email_sent_at = coalesce(email_sent_at, now()), email_claimed_until = NULL
    WHERE id = ANY ($2::bigint[]) AND EXISTS (SELECT 1 FROM sent)
"""

_DUE = f"""
    SELECT b.id FROM screenings s JOIN bookings b ON b.screening_id = s.id
    LEFT JOIN cancellation_notices n ON n.booking_id = b.id
    WHERE s.cancelled_at IS NOT NULL AND s.cancelled_at > now() - interval '1 day'
      AND ($1::bigint IS NULL OR s.id = $1)
      AND (n.booking_id IS NULL
           OR (n.sent_at IS NULL AND (n.claimed_until IS NULL OR n.claimed_until < now())))
      AND {_OWED}
    ORDER BY b.id LIMIT $2
"""

# A payment that arrived for a booking already cancelled: the settlement refunds it whole.
_LATE_REFUND_STATES = ("refund_pending", "refunded")


def _notice(row: Any) -> CancellationNotice:
    refund_ids = tuple(row["refund_ids"])
    return CancellationNotice(
        booking_id=row["id"],
        reference=row["reference"],
        email=row["email"],
        movie_title=row["title"],
        starts_at=row["starts_at"],
        reason=row["reason"],
        currency=row["currency"].strip(),
        refunded=int(row["refunded"]),
        refund_failed=int(row["refund_failed"]),
        late_payment_refunded=not refund_ids and row["payment_status"] in _LATE_REFUND_STATES,
        refund_ids=refund_ids,
    )


class PgNoticeStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def claim(self, booking_id: int, lease_seconds: float) -> CancellationNotice | None:
        async with self._pool.acquire() as conn:
            if await conn.fetchval(_CLAIM, booking_id, float(lease_seconds)) is None:
                return None
            return _notice(await conn.fetchrow(_NOTICE, booking_id))

    async def mark_sent(self, notice: CancellationNotice) -> None:
        await self._pool.execute(_MARK, notice.booking_id, list(notice.refund_ids))

    async def release(self, booking_id: int) -> None:
        await self._pool.execute(
            "UPDATE cancellation_notices SET claimed_until = NULL"
            " WHERE booking_id = $1 AND sent_at IS NULL",
            booking_id,
        )

    async def due(self, screening_id: int | None, limit: int) -> list[int]:
        return [r["id"] for r in await self._pool.fetch(_DUE, screening_id, limit)]
