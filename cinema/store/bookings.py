"""Bookings and reservations in PostgreSQL. The locking rules are in docs/concurrency.md."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from cinema.booking.errors import IdempotencyKeyTaken, ReferenceTaken, SeatsUnavailable
from cinema.booking.model import (
    Booking,
    BookingStatus,
    CancelReason,
    LiveReservation,
    NewBooking,
    Payment,
    PaymentStatus,
)
from cinema.store.pool import Pool

_BOOKING_COLUMNS = """
    b.id, b.reference, b.user_id, b.screening_id, b.status, b.amount, b.currency,
    b.expires_at, b.hold_token, b.idempotency_key, b.cancel_reason, b.created_at, b.updated_at,
    b.payment_provider, b.payment_intent_id, b.payment_client_secret, b.payment_status,
    ARRAY(SELECT r.seat_id FROM reservations r WHERE r.booking_id = b.id ORDER BY r.seat_id)
        AS seat_ids
"""

_LOCK_SEATS = "SELECT id FROM seats WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"

# Runs after the seat locks are held, in its own statement, so its snapshot sees every
# reservation committed by whoever held those locks before us.
_LIVE_CONFLICTS = """
    SELECT seat_id, booking_id, status = 'PENDING' AND expires_at <= now() AS lapsed
    FROM reservations
    WHERE screening_id = $1 AND seat_id = ANY($2::bigint[]) AND status <> 'CANCELLED'
"""

_END_BOOKINGS = """
    WITH ended AS (
        UPDATE bookings SET status = $2, cancel_reason = $3, updated_at = now()
        WHERE id = ANY($1::bigint[]) AND status = 'PENDING' AND ($4 OR expires_at <= now())
        RETURNING id
    )
    UPDATE reservations SET status = $2
    WHERE booking_id IN (SELECT id FROM ended) AND status = 'PENDING'
    RETURNING booking_id
"""

# Overdue holds, oldest deadline first, through bookings_status_expires_idx. SKIP LOCKED lets
# several reconcilers (or a reconciler and the expiry tasks) work side by side.
_LOCK_OVERDUE = """
    SELECT id FROM bookings
    WHERE status = 'PENDING' AND expires_at <= now()
    ORDER BY expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
"""

# _END_BOOKINGS for one due booking, returning the ended booking with its seats.
_EXPIRE_ONE = """
    WITH ended AS (
        UPDATE bookings SET status = 'CANCELLED', cancel_reason = $2, updated_at = now()
        WHERE id = $1 AND status = 'PENDING' AND expires_at <= now()
        RETURNING *
    ), seats AS (
        UPDATE reservations SET status = 'CANCELLED'
        WHERE booking_id IN (SELECT id FROM ended) AND status = 'PENDING'
        RETURNING seat_id
    )
    SELECT ended.*, ARRAY(SELECT seat_id FROM seats ORDER BY seat_id) AS seat_ids FROM ended
"""

_INSERT_BOOKING = """
    WITH b AS (
        INSERT INTO bookings (reference, user_id, screening_id, amount, currency, expires_at,
                              hold_token, idempotency_key)
        VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7, $8)
        RETURNING *
    ), r AS (
        INSERT INTO reservations (booking_id, screening_id, seat_id, status, expires_at)
        SELECT b.id, b.screening_id, seat_id, 'PENDING', b.expires_at
        FROM b, unnest($9::bigint[]) AS seat_id
    )
    SELECT b.*, $9::bigint[] AS seat_ids FROM b
"""

_EXPIRED = CancelReason.EXPIRED.value
# A dict lookup instead of an Enum call per row: a full seat map has hundreds of rows.
_STATUS_BY_NAME = {status.value: status for status in BookingStatus}

_SEAT_IN_DETAIL = re.compile(r"\(screening_id, seat_id\)=\(\d+, (\d+)\)")


_ATTACH_PAYMENT = """
    UPDATE bookings SET payment_provider = $2, payment_intent_id = $3,
        payment_client_secret = $4, payment_status = 'requires_payment', updated_at = now()
    WHERE id = $1 AND payment_intent_id IS NULL
"""


def _payment(row: Any) -> Payment | None:
    intent_id = row.get("payment_intent_id")
    if intent_id is None:
        return None
    return Payment(
        provider=row["payment_provider"],
        intent_id=intent_id,
        client_secret=row["payment_client_secret"],
        status=PaymentStatus(row["payment_status"]),
    )


def booking_from_row(row: Any) -> Booking:
    return _booking(row)


def _booking(row: Any) -> Booking:
    return Booking(
        id=row["id"],
        reference=row["reference"],
        user_id=row["user_id"],
        screening_id=row["screening_id"],
        status=BookingStatus(row["status"]),
        seat_ids=tuple(row["seat_ids"]),
        amount=row["amount"],
        currency=row["currency"],
        expires_at=row["expires_at"],
        hold_token=row["hold_token"],
        idempotency_key=row["idempotency_key"],
        cancel_reason=row["cancel_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        payment=_payment(row),
    )


class PgBookingStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create_booking(self, new: NewBooking) -> Booking:
        seat_ids = list(new.seat_ids)
        async with self._pool.acquire() as conn, conn.transaction():
            locked = await conn.fetch(_LOCK_SEATS, seat_ids)
            if len(locked) != len(seat_ids):
                raise SeatsUnavailable([s for s in seat_ids if s not in {r["id"] for r in locked}])
            conflicts = await conn.fetch(_LIVE_CONFLICTS, new.screening_id, seat_ids)
            lapsed = sorted({r["booking_id"] for r in conflicts if r["lapsed"]})
            if lapsed:
                await conn.execute(_END_BOOKINGS, lapsed, "CANCELLED", "expired", False)
            taken = sorted(r["seat_id"] for r in conflicts if not r["lapsed"])
            if taken:
                raise SeatsUnavailable(taken)
            try:
                row = await conn.fetchrow(
                    _INSERT_BOOKING,
                    new.reference,
                    new.user_id,
                    new.screening_id,
                    new.amount,
                    new.currency,
                    float(new.hold_ttl_seconds),
                    new.hold_token,
                    new.idempotency_key,
                    seat_ids,
                )
            except asyncpg.UniqueViolationError as exc:
                raise _unique_violation(exc, seat_ids) from exc
        return _booking(row)

    async def booking(self, booking_id: int) -> Booking | None:
        row = await self._pool.fetchrow(
            f"SELECT {_BOOKING_COLUMNS} FROM bookings b WHERE b.id = $1", booking_id
        )
        return None if row is None else _booking(row)

    async def booking_by_idempotency_key(self, user_id: int, key: str) -> Booking | None:
        row = await self._pool.fetchrow(
            f"SELECT {_BOOKING_COLUMNS} FROM bookings b"
            " WHERE b.user_id = $1 AND b.idempotency_key = $2",
            user_id,
            key,
        )
        return None if row is None else _booking(row)

    async def bookings_of_user(self, user_id: int, limit: int, offset: int) -> list[Booking]:
        rows = await self._pool.fetch(
            f"SELECT {_BOOKING_COLUMNS} FROM bookings b WHERE b.user_id = $1"
            " ORDER BY b.created_at DESC, b.id DESC LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
        )
        return [_booking(r) for r in rows]

    async def end_booking(
        self, booking_id: int, target: BookingStatus, reason: str | None
    ) -> Booking | None:
        async with self._pool.acquire() as conn, conn.transaction():
            ended = await conn.fetch(_END_BOOKINGS, [booking_id], target.value, reason, True)
            if not ended:
                return None
            row = await conn.fetchrow(
                f"SELECT {_BOOKING_COLUMNS} FROM bookings b WHERE b.id = $1", booking_id
            )
        return _booking(row)

    async def expire_booking(self, booking_id: int) -> Booking | None:
        """Cancel the booking as expired if it is still PENDING and past its deadline.
        One statement, so one transaction and one round trip (the expiry task's hot path)."""
        row = await self._pool.fetchrow(_EXPIRE_ONE, booking_id, _EXPIRED)
        return None if row is None else _booking(row)

    async def expire_overdue(self, limit: int) -> list[Booking]:
        """Cancel up to `limit` overdue PENDING bookings in one transaction; return them."""
        async with self._pool.acquire() as conn, conn.transaction():
            due = [r["id"] for r in await conn.fetch(_LOCK_OVERDUE, limit)]
            if not due:
                return []
            ended = await conn.fetch(
                _END_BOOKINGS, due, BookingStatus.CANCELLED.value, _EXPIRED, False
            )
            ids = sorted({r["booking_id"] for r in ended})
            rows = await conn.fetch(
                f"SELECT {_BOOKING_COLUMNS} FROM bookings b WHERE b.id = ANY($1::bigint[])"
                " ORDER BY b.id",
                ids,
            )
        return [_booking(r) for r in rows]

    async def booking_by_reference(self, user_id: int, reference: str) -> Booking | None:
        row = await self._pool.fetchrow(
            f"SELECT {_BOOKING_COLUMNS} FROM bookings b WHERE b.reference = $1 AND b.user_id = $2",
            reference,
            user_id,
        )
        return None if row is None else _booking(row)

    async def attach_payment(
        self, booking_id: int, provider: str, intent_id: str, client_secret: str
    ) -> Booking:
        async with self._pool.acquire() as conn:
            await conn.execute(_ATTACH_PAYMENT, booking_id, provider, intent_id, client_secret)
            row = await conn.fetchrow(
                f"SELECT {_BOOKING_COLUMNS} FROM bookings b WHERE b.id = $1", booking_id
            )
        return _booking(row)

    async def set_payment_status(
        self, booking_id: int, status: PaymentStatus, expected: PaymentStatus
    ) -> bool:
        done = await self._pool.fetchval(
            "UPDATE bookings SET payment_status = $2, updated_at = now()"
            " WHERE id = $1 AND payment_status = $3 RETURNING true",
            booking_id,
            status.value,
            expected.value,
        )
        return bool(done)

    async def ended_with_open_intent(self, limit: int) -> list[int]:
        rows = await self._pool.fetch(
            "SELECT id FROM bookings WHERE status = 'CANCELLED'"
            " AND payment_status IN ('requires_payment', 'failed') ORDER BY id LIMIT $1",
            limit,
        )
        return [r["id"] for r in rows]

    async def cancelled_before_deadline(self, limit: int, after_id: int) -> list[Booking]:
        # A small range of bookings_status_expires_idx: only holds that ended early and
        # whose deadline is still ahead (expired ones are past it by definition).
        rows = await self._pool.fetch(
            f"SELECT {_BOOKING_COLUMNS} FROM bookings b WHERE b.status = 'CANCELLED'"
            " AND b.expires_at > now() AND b.id > $2 ORDER BY b.id LIMIT $1",
            limit,
            after_id,
        )
        return [_booking(r) for r in rows]

    async def live_reservations(self, screening_id: int) -> list[LiveReservation]:
        rows = await self._pool.fetch(
            "SELECT seat_id, status, expires_at <= now() AS lapsed FROM reservations"
            " WHERE screening_id = $1 AND status <> 'CANCELLED'",
            screening_id,
        )
        statuses = _STATUS_BY_NAME
        return [LiveReservation(r[0], statuses[r[1]], r[2]) for r in rows]


def _unique_violation(exc: asyncpg.UniqueViolationError, seat_ids: list[int]) -> Exception:
    constraint: str | None = exc.constraint_name
    if constraint == "reservations_live_seat_uidx":
        match = _SEAT_IN_DETAIL.search(exc.detail or "")
        return SeatsUnavailable([int(match.group(1))] if match else seat_ids)
    if constraint == "bookings_reference_uidx":
        return ReferenceTaken()
    if constraint == "bookings_user_idempotency_uidx":
        return IdempotencyKeyTaken()
    error: Exception = exc
    return error


# Shared with the settlement store, which takes seats back under the very same rules.
BOOKING_COLUMNS = _BOOKING_COLUMNS
LOCK_SEATS = _LOCK_SEATS
LIVE_CONFLICTS = _LIVE_CONFLICTS
END_BOOKINGS = _END_BOOKINGS
