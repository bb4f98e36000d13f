"""Applying payment events in PostgreSQL: the event id is recorded in the same transaction as
the change it causes, so a duplicate delivery (even ten at once) changes nothing."""

from __future__ import annotations

import logging
from typing import Any

from cinema.booking import rules
from cinema.booking.model import (
    BookingStatus,
    CancelReason,
    PaymentEvent,
    PaymentEventKind,
    PaymentStatus,
    Settlement,
    SettlementOutcome,
)
from cinema.booking.rules import SettleAction
from cinema.store import audit
from cinema.store.bookings import (
    BOOKING_COLUMNS,
    CANCELLED_SQL,
    CONFIRMED_SQL,
    PENDING_SQL,
    booking_from_row,
    take_seats,
)
from cinema.store.pool import Pool

log = logging.getLogger(__name__)

_RECORD_EVENT = """
    INSERT INTO payment_events (event_id, type, payment_intent_id) VALUES ($1, $2, $3)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING true
"""

# Concurrent deliveries for one booking queue here, one after the other.
_LOCK_BOOKING = """
    SELECT id, screening_id, status, payment_status, amount, currency, user_id, promo_code_id,
           ARRAY(SELECT r.seat_id FROM reservations r WHERE r.booking_id = b.id
                 ORDER BY r.seat_id) AS seat_ids,
           (SELECT sc.max_tickets_per_customer FROM screenings sc
             WHERE sc.id = b.screening_id) AS customer_limit,
           (SELECT sc.starts_at <= now() FROM screenings sc WHERE sc.id = b.screening_id)
               AS started
    FROM bookings b WHERE payment_intent_id = $1
    FOR UPDATE
"""

_CONFIRM = f"""
    WITH b AS (
        UPDATE bookings SET status = {CONFIRMED_SQL}, payment_status = 'succeeded',
            cancel_reason = NULL, updated_at = now()
        WHERE id = $1
        RETURNING id
    )
    UPDATE reservations SET status = {CONFIRMED_SQL} WHERE booking_id = (SELECT id FROM b)
"""

_CANCEL = f"""
    WITH b AS (
        UPDATE bookings SET status = {CANCELLED_SQL}, payment_status = $2, cancel_reason = $3,
            updated_at = now()
        WHERE id = $1 AND status = {PENDING_SQL}
        RETURNING id
    )
    UPDATE reservations SET status = {CANCELLED_SQL}
    WHERE booking_id = (SELECT id FROM b) AND status = {PENDING_SQL}
"""

_TAKE_PROMO_USE = "SELECT use_id, refused FROM cinema_take_promo_use($1, $2)"

# Locks the (customer, screening) row, then counts their live tickets (db/008, rule A.3.3).
_CUSTOMER_TICKETS = "SELECT cinema_customer_tickets($1, $2)"

_MARK_REFUND_PENDING = """
    UPDATE bookings SET payment_status = 'refund_pending', updated_at = now() WHERE id = $1
"""

_CANCEL_REASON = {
    PaymentEventKind.FAILED: (PaymentStatus.FAILED, CancelReason.PAYMENT_FAILED),
    PaymentEventKind.CANCELED: (PaymentStatus.CANCELED, CancelReason.PAYMENT_CANCELED),
}


class PgSettlementStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def settle(self, event: PaymentEvent) -> Settlement:
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.bind(conn)
            fresh = await conn.fetchval(_RECORD_EVENT, event.id, event.type, event.intent_id)
            if not fresh:
                row = await conn.fetchrow(
                    f"SELECT {BOOKING_COLUMNS} FROM bookings b WHERE b.payment_intent_id = $1",
                    event.intent_id,
                )
                booking = None if row is None else booking_from_row(row)
                return Settlement(SettlementOutcome.DUPLICATE, booking)
            locked = await conn.fetchrow(_LOCK_BOOKING, event.intent_id)
            if locked is None:
                outcome = SettlementOutcome.UNKNOWN_INTENT
            else:
                outcome = await self._apply(conn, locked, event)
            await conn.execute(
                "UPDATE payment_events SET booking_id = $2, outcome = $3 WHERE event_id = $1",
                event.id,
                None if locked is None else locked["id"],
                outcome.value,
            )
            if locked is None:
                return Settlement(outcome, None)
            row = await conn.fetchrow(
                f"SELECT {BOOKING_COLUMNS} FROM bookings b WHERE b.id = $1", locked["id"]
            )
        return Settlement(outcome, booking_from_row(row))

    async def _apply(self, conn: Any, locked: Any, event: PaymentEvent) -> SettlementOutcome:
        payment = locked["payment_status"]
        kind = event.kind
        action = rules.settle_action(
            BookingStatus(locked["status"]),
            None if payment is None else PaymentStatus(payment),
            kind,
            paid_in_full=rules.pays_booking(
                locked["amount"], locked["currency"], event.amount, event.currency
            ),
            started=bool(locked["started"]),  # PostgreSQL's clock, as for every deadline
        )
        booking_id = locked["id"]
        if action is SettleAction.REFUND_MISMATCH:
            await conn.execute(_MARK_REFUND_PENDING, booking_id)
            return SettlementOutcome.AMOUNT_MISMATCH
        if action is SettleAction.REFUND_STARTED:
            # Paid after its screening started: a PENDING hold ends here (its seats are of
            # no use any more), an ended one stays ended; either way the money goes back.
            await conn.execute(
                _CANCEL,
                booking_id,
                PaymentStatus.REFUND_PENDING.value,
                CancelReason.SCREENING_STARTED.value,
            )
            await conn.execute(_MARK_REFUND_PENDING, booking_id)
            return SettlementOutcome.REFUND_NEEDED
        if action is SettleAction.CONFIRM:
            # Its reservations are live (a PENDING booking's always are: whoever takes its
            # seats after the deadline must end it first, and waits for our row lock).
            await conn.execute(_CONFIRM, booking_id)
            return SettlementOutcome.CONFIRMED
        if action is SettleAction.CANCEL:
            status, reason = _CANCEL_REASON[kind]
            await conn.execute(_CANCEL, booking_id, status.value, reason.value)
            return SettlementOutcome.CANCELLED
        if action is SettleAction.RECLAIM:
            # Lock order A.3: the customer's row, then the seats, then a promo use.
            if (
                await self._within_customer_limit(conn, locked)
                and await self._seats_free(conn, locked["screening_id"], list(locked["seat_ids"]))
                and await self._promo_use_back(conn, locked)
            ):
                await conn.execute(_CONFIRM, booking_id)
                return SettlementOutcome.CONFIRMED_LATE
            await conn.execute(
                "UPDATE bookings SET payment_status = 'refund_pending', updated_at = now()"
                " WHERE id = $1",
                booking_id,
            )
            return SettlementOutcome.REFUND_NEEDED
        return SettlementOutcome.IGNORED

    async def _within_customer_limit(self, conn: Any, locked: Any) -> bool:
        """A reclaimed booking's tickets count again: the customer may have booked others
        meanwhile (theirs stopped counting when this one ended), so the limit decides."""
        limit = locked["customer_limit"]
        if limit is None:
            return True
        held = await conn.fetchval(_CUSTOMER_TICKETS, locked["user_id"], locked["screening_id"])
        return bool(held + len(locked["seat_ids"]) <= limit)

    async def _seats_free(self, conn: Any, screening_id: int, seat_ids: list[int]) -> bool:
        """Take the seats back through the one seat-taking function, as create_booking does."""
        if not seat_ids:
            return False
        return not await take_seats(conn, screening_id, seat_ids)

    async def _promo_use_back(self, conn: Any, locked: Any) -> bool:
        """A reclaimed booking was paid its discounted price: it needs its promo use again
        (given back when it ended), taken after the seats (docs/concurrency.md A.3.6)."""
        if locked["promo_code_id"] is None:
            return True
        row = await conn.fetchrow(_TAKE_PROMO_USE, locked["promo_code_id"], locked["user_id"])
        if row["refused"] is not None:
            return False
        await conn.execute(
            "UPDATE promo_code_uses SET booking_id = $2, user_id = $3 WHERE id = $1",
            row["use_id"],
            locked["id"],
            locked["user_id"],
        )
        return True

    async def record_refund(self, booking_id: int, refund_id: str) -> None:
        async with audit.audited(self._pool) as conn:
            await conn.execute(
                "UPDATE bookings SET payment_status = 'refunded', refund_id = $2,"
                " updated_at = now() WHERE id = $1 AND payment_status = 'refund_pending'",
                booking_id,
                refund_id,
            )
