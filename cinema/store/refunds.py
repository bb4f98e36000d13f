"""Refunds in PostgreSQL: the one refund transaction (cinema_refund_tickets, db/013), the
provider-call lease, the webhook updates and the refund email's at-most-once bookkeeping.
Lock order (docs/concurrency.md A.3, C.8-C.9): the event key, then the booking row, then
its reservations and refund rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cinema.refunds.model import (
    ProviderRefund,
    Refund,
    RefundEvent,
    RefundItem,
    RefundRequest,
    RefundSource,
    RefundStatus,
    SubmitClaim,
)
from cinema.refunds.ports import Recorded, RefundNotice
from cinema.store import audit
from cinema.store.pool import Pool

_RECORD = """
    SELECT refund_id, refused, seats
    FROM cinema_refund_tickets($1, $2::bigint[], $3::bigint[], $4,
                               cinema_audited($5::text, $8::text::jsonb), $6, $7)
"""

_COLUMNS = """
    r.id, r.booking_id, r.amount_minor, r.currency, r.reason, r.source, r.status,
    r.idempotency_key, r.provider_refund_id, r.requested_by, r.created_at, r.last_error,
    (SELECT coalesce(jsonb_agg(jsonb_build_object('seat_id', i.seat_id,
                                                  'amount', i.amount_minor)
                               ORDER BY i.seat_id), '[]'::jsonb)
       FROM refund_items i WHERE i.refund_id = r.id) AS items
"""

_CLAIM_SUBMIT = f"""
    WITH claimed AS (
        UPDATE refunds SET claimed_until = now() + make_interval(secs => $2),
                           attempts = attempts + 1, updated_at = now()
        WHERE id = $1 AND status = 'pending' AND provider_refund_id IS NULL
          AND (claimed_until IS NULL OR claimed_until < now())
        RETURNING id, attempts
    )
    SELECT {_COLUMNS}, c.attempts, b.payment_intent_id, b.reference
    FROM claimed c JOIN refunds r ON r.id = c.id JOIN bookings b ON b.id = r.booking_id
"""

_DUE = """
    SELECT id FROM refunds
    WHERE provider_refund_id IS NULL AND status = 'pending' AND next_attempt_at <= now()
      AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY next_attempt_at LIMIT $1
"""

_RECORD_EVENT = """
    INSERT INTO payment_events (event_id, type, payment_intent_id) VALUES ($1, $2, $3)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING true
"""

_PAYMENT_FOLLOWS = """
    UPDATE bookings SET payment_status = cinema_refunds_payment_status(id, payment_status),
        updated_at = now()
    WHERE id = $1
"""

# States move forward: pending -> refunded | failed, refunded -> failed (Stripe may fail a
# refund after reporting it succeeded); an older event never moves one back.
_MOVE = """
    UPDATE refunds SET
        provider_refund_id = coalesce(provider_refund_id, $3),
        status = CASE
            WHEN $4::text = 'refunded' AND status = 'pending' THEN 'refunded'
            WHEN $4::text = 'failed' AND status IN ('pending', 'refunded') THEN 'failed'
            ELSE status END,
        updated_at = now()
    WHERE booking_id = $1 AND (id = $2 OR ($2::bigint IS NULL AND provider_refund_id = $3))
"""

# charge.refunded without the list of refunds: the charge's refunded total covers our
# refunds the provider has, oldest first.
_COVERED = """
    WITH ordered AS (
        SELECT id, sum(amount_minor) OVER (ORDER BY id) AS running
        FROM refunds WHERE booking_id = $1 AND provider_refund_id IS NOT NULL
          AND status <> 'failed'
    )
    UPDATE refunds r SET status = 'refunded', updated_at = now()
    FROM ordered o WHERE r.id = o.id AND o.running <= $2 AND r.status = 'pending'
"""

# A cancelled screening's refund is told of by its cancellation notice (cinema/store/notices.py),
# which sets email_sent_at; only one made after that notice went out gets its own email.
_NOT_FOR_THE_NOTICE = """
    (refunds.source <> 'screening' OR EXISTS (
        SELECT 1 FROM cancellation_notices n
        WHERE n.booking_id = refunds.booking_id AND n.sent_at IS NOT NULL))
"""

_CLAIM_NOTICE = f"""
    UPDATE refunds SET email_claimed_until = now() + make_interval(secs => $2)
    WHERE id = $1 AND email_sent_at IS NULL AND status <> 'failed'
      AND (provider_refund_id IS NOT NULL OR status = 'refunded')
      AND (email_claimed_until IS NULL OR email_claimed_until < now())
      AND {_NOT_FOR_THE_NOTICE}
    RETURNING id
"""

_NOTICE = """
    SELECT r.id, r.booking_id, r.amount_minor, r.currency, r.reason, b.reference,
           b.amount AS booking_amount, b.refunded_minor, u.email, m.title, s.starts_at
    FROM refunds r JOIN bookings b ON b.id = r.booking_id JOIN users u ON u.id = b.user_id
    JOIN screenings s ON s.id = b.screening_id JOIN movies m ON m.id = s.movie_id
    WHERE r.id = $1
"""

_UNNOTIFIED = f"""
    SELECT id FROM refunds
    WHERE email_sent_at IS NULL AND status <> 'failed'
      AND (provider_refund_id IS NOT NULL OR status = 'refunded')
      AND (email_claimed_until IS NULL OR email_claimed_until < now())
      AND updated_at < now() - make_interval(secs => $2)
      AND created_at > now() - interval '1 day'
      AND {_NOT_FOR_THE_NOTICE}
    ORDER BY id LIMIT $1
"""


def _refund(row: Any) -> Refund:
    return Refund(
        id=row["id"],
        booking_id=row["booking_id"],
        amount=row["amount_minor"],
        currency=row["currency"],
        reason=row["reason"],
        source=RefundSource(row["source"]),
        status=RefundStatus(row["status"]),
        idempotency_key=row["idempotency_key"],
        provider_refund_id=row["provider_refund_id"],
        requested_by=row["requested_by"],
        created_at=row["created_at"],
        items=tuple(RefundItem(i["seat_id"], i["amount"]) for i in row["items"]),
        last_error=row["last_error"],
    )


# Refunded seats of the last $1 s that no booking holds now, per screening: their sold
# markers may be left in Redis by a process that died before clearing them.
_FREED = """
    SELECT b.screening_id, array_agg(DISTINCT i.seat_id ORDER BY i.seat_id) AS seat_ids
    FROM refunds r JOIN refund_items i ON i.refund_id = r.id JOIN bookings b ON b.id = r.booking_id
    WHERE r.created_at > now() - make_interval(secs => $1)
      AND NOT EXISTS (SELECT 1 FROM reservations l WHERE l.screening_id = b.screening_id
                        AND l.seat_id = i.seat_id AND l.status <> 'CANCELLED')
    GROUP BY b.screening_id
"""


class PgRefundStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def record(
        self, request: RefundRequest, shares: Mapping[int, int], whole: bool
    ) -> Recorded:
        seats = sorted(shares) if whole or request.seat_ids is None else sorted(request.seat_ids)
        row = await self._pool.fetchrow(
            _RECORD,
            request.booking_id,
            seats,
            [shares.get(s, 0) for s in seats],
            whole,
            request.reason,
            request.source.value,
            request.requested_by,
            audit.context(),  # who asks: the audit log's actor (db/014_c)
        )
        return Recorded(row["refund_id"], row["refused"], tuple(row["seats"] or ()))

    async def refund(self, refund_id: int) -> Refund | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM refunds r WHERE r.id = $1", refund_id
        )
        return None if row is None else _refund(row)

    async def refunds_of(self, booking_id: int) -> list[Refund]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM refunds r WHERE r.booking_id = $1 ORDER BY r.id DESC",
            booking_id,
        )
        return [_refund(r) for r in rows]

    async def claim_submit(self, refund_id: int, lease_seconds: float) -> SubmitClaim | None:
        row = await self._pool.fetchrow(_CLAIM_SUBMIT, refund_id, float(lease_seconds))
        if row is None or row["payment_intent_id"] is None:
            return None
        return SubmitClaim(
            _refund(row), row["payment_intent_id"], row["reference"], row["attempts"]
        )

    async def submitted(self, refund_id: int, provider_refund_id: str) -> None:
        await self._pool.execute(
            "UPDATE refunds SET provider_refund_id = coalesce(provider_refund_id, $2),"
            " claimed_until = NULL, last_error = NULL, updated_at = now() WHERE id = $1",
            refund_id,
            provider_refund_id,
        )

    async def submit_failed(
        self, refund_id: int, error: str, retry_in_seconds: float | None
    ) -> None:
        if retry_in_seconds is not None:
            await self._pool.execute(
                "UPDATE refunds SET claimed_until = NULL, last_error = $2, updated_at = now(),"
                " next_attempt_at = now() + make_interval(secs => $3)"
                " WHERE id = $1 AND provider_refund_id IS NULL",
                refund_id,
                error[:500],
                float(retry_in_seconds),
            )
            return
        async with self._pool.acquire() as conn, conn.transaction():
            booking_id = await conn.fetchval(
                "SELECT b.id FROM bookings b JOIN refunds r ON r.booking_id = b.id"
                " WHERE r.id = $1 FOR UPDATE OF b",
                refund_id,
            )
            await conn.execute(
                "UPDATE refunds SET claimed_until = NULL, last_error = $2, status = 'failed',"
                " updated_at = now() WHERE id = $1 AND provider_refund_id IS NULL",
                refund_id,
                error[:500],
            )
            await conn.execute(_PAYMENT_FOLLOWS, booking_id)

    async def recently_freed(self, within_seconds: float) -> list[tuple[int, tuple[int, ...]]]:
        rows = await self._pool.fetch(_FREED, float(within_seconds))
        return [(r["screening_id"], tuple(r["seat_ids"])) for r in rows]

    async def due_submissions(self, limit: int) -> list[int]:
        return [r["id"] for r in await self._pool.fetch(_DUE, limit)]

    async def apply_event(self, event: RefundEvent) -> list[int] | None:
        async with audit.audited(self._pool) as conn:
            if not await conn.fetchval(_RECORD_EVENT, event.id, event.type, event.intent_id):
                return None
            booking_id = await conn.fetchval(
                "SELECT id FROM bookings WHERE payment_intent_id = $1 FOR UPDATE", event.intent_id
            )
            if booking_id is not None:
                await self._move(conn, booking_id, event)
                await conn.execute(_PAYMENT_FOLLOWS, booking_id)
            await conn.execute(
                "UPDATE payment_events SET booking_id = $2, outcome = $3 WHERE event_id = $1",
                event.id,
                booking_id,
                "refund_updated" if booking_id is not None else "unknown_intent",
            )
        return [] if booking_id is None else [booking_id]

    async def _move(self, conn: Any, booking_id: int, event: RefundEvent) -> None:
        for item in event.refunds:
            await self._move_one(conn, booking_id, item)
        if not event.refunds and event.amount_refunded is not None:
            await conn.execute(_COVERED, booking_id, event.amount_refunded)

    @staticmethod
    async def _move_one(conn: Any, booking_id: int, item: ProviderRefund) -> None:
        if item.refund_id is None and item.provider_refund_id is None:
            return
        status = None if item.status is None else item.status.value
        await conn.execute(_MOVE, booking_id, item.refund_id, item.provider_refund_id, status)

    async def claim_notice(self, refund_id: int, lease_seconds: float) -> RefundNotice | None:
        async with self._pool.acquire() as conn:
            if await conn.fetchval(_CLAIM_NOTICE, refund_id, float(lease_seconds)) is None:
                return None
            row = await conn.fetchrow(_NOTICE, refund_id)
        return RefundNotice(
            refund_id=row["id"],
            booking_id=row["booking_id"],
            reference=row["reference"],
            email=row["email"],
            movie_title=row["title"],
            starts_at=row["starts_at"],
            amount=row["amount_minor"],
            currency=row["currency"],
            reason=row["reason"],
            booking_amount=row["booking_amount"],
            refunded_total=row["refunded_minor"],
        )

    async def mark_notified(self, refund_id: int) -> None:
        await self._pool.execute(
            "UPDATE refunds SET email_sent_at = now(), email_claimed_until = NULL WHERE id = $1",
            refund_id,
        )

    async def release_notice(self, refund_id: int) -> None:
        await self._pool.execute(
            "UPDATE refunds SET email_claimed_until = NULL WHERE id = $1 AND email_sent_at IS NULL",
            refund_id,
        )

    async def unnotified(self, limit: int, min_age_seconds: float) -> list[int]:
        rows = await self._pool.fetch(_UNNOTIFIED, limit, float(min_age_seconds))
        return [r["id"] for r in rows]
