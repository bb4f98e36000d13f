"""Bookings and reservations in PostgreSQL. The locking rules are in docs/concurrency.md."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import asyncpg

from cinema.auth.errors import UnknownUser
from cinema.booking.errors import (
    CustomerLimitReached,
    IdempotencyKeyTaken,
    ReferenceTaken,
    SeatsUnavailable,
    SoldOut,
)
from cinema.booking.model import (
    Booking,
    BookingStatus,
    CancelReason,
    LiveReservation,
    NewBooking,
    Payment,
    PaymentStatus,
)
from cinema.pricing.errors import PromoUseRefused
from cinema.pricing.model import TicketLine
from cinema.refunds.errors import ScreeningCancelled
from cinema.store import audit
from cinema.store.pool import DatabaseUnavailable, Pool

log = logging.getLogger(__name__)

# One JSON object per ticket of booking `b`, ascending seat id (decoded by the pool's codec).
TICKETS_OF_B = """
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'seat_id', r.seat_id, 'category', s.category,
                'ticket_type', r.ticket_type, 'price', coalesce(r.price_minor, 0))
                ORDER BY r.seat_id),
            '[]'::jsonb)
       FROM reservations r JOIN seats s ON s.id = r.seat_id
      WHERE r.booking_id = b.id) AS tickets
"""

_BOOKING_COLUMNS = (
    """
    b.id, b.reference, b.user_id, b.screening_id, b.status, b.amount, b.currency,
    b.expires_at, b.hold_token, b.idempotency_key, b.cancel_reason, b.created_at, b.updated_at,
    b.payment_provider, b.payment_intent_id, b.payment_client_secret, b.payment_status,
    b.subtotal_minor, b.discount_minor, b.fees_minor, b.promo_code_id, b.refunded_minor,
    (SELECT p.code FROM promo_codes p WHERE p.id = b.promo_code_id) AS promo_code,
    ARRAY(SELECT r.seat_id FROM reservations r WHERE r.booking_id = b.id ORDER BY r.seat_id)
        AS seat_ids,
    EXISTS (SELECT 1 FROM screenings sc WHERE sc.id = b.screening_id AND sc.capacity IS NOT NULL)
        AS general_admission,
"""
    + TICKETS_OF_B
)


def _literal(status: BookingStatus) -> str:
    """BookingStatus is the one home of the status names (db/001's booking_status enum
    mirrors it, tests/test_take_seats.py checks): SQL in cinema/store spells them through
    these literals, never by hand (literals, not parameters: partial indexes match them)."""
    return f"'{status.value}'"


PENDING_SQL = _literal(BookingStatus.PENDING)
CONFIRMED_SQL = _literal(BookingStatus.CONFIRMED)
CANCELLED_SQL = _literal(BookingStatus.CANCELLED)
COMPLETED_SQL = _literal(BookingStatus.COMPLETED)
NO_SHOW_SQL = _literal(BookingStatus.NO_SHOW)

# The one way to take seats and places: db/004_take_seats.sql, db/008_general_admission.sql
# (rules in docs/concurrency.md). A new booking is one statement, so one round trip and its
# own transaction.
_CREATE_BOOKING = """
    SELECT (c.booking).*, c.taken, c.seat_ids, c.refused, c.available, c.in_flight,
           $16::bigint IS NOT NULL AS general_admission
    FROM cinema_create_booking(cinema_audited($1::text, $19::text::jsonb), $2, $3, $4, $5,
                               $6, $7, $8, $9::bigint[], $10::text[], $11::bigint[], $12, $13,
                               $14, $15, $16, $17, $18) AS c
"""

_TAKE_SEATS = "SELECT cinema_take_seats($1, $2::bigint[])"

_END_BOOKINGS = """
    SELECT booking_id FROM cinema_end_bookings($1::bigint[], $2, $3, $4) AS ended(booking_id)
"""

# Overdue holds, oldest deadline first, through bookings_status_expires_idx. SKIP LOCKED lets
# several reconcilers (or a reconciler and the expiry tasks) work side by side.
_LOCK_OVERDUE = f"""
    SELECT id FROM bookings
    WHERE status = {PENDING_SQL} AND expires_at <= now()
    ORDER BY expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
"""

# What cinema_end_bookings does, for one due booking in one statement (the expiry task's hot
# path), returning the ended booking with its seats.
_EXPIRE_ONE = f"""
    WITH ended AS (
        UPDATE bookings SET status = {CANCELLED_SQL}, cancel_reason = $2, updated_at = now()
        WHERE id = $1 AND status = {PENDING_SQL} AND expires_at <= now()
        RETURNING *
    ), freed AS (
        UPDATE reservations SET status = {CANCELLED_SQL}
        WHERE booking_id IN (SELECT id FROM ended) AND status = {PENDING_SQL}
        RETURNING seat_id
    )
    SELECT ended.*, ARRAY(SELECT seat_id FROM freed ORDER BY seat_id) AS seat_ids,
        {TICKETS_OF_B.replace("b.id", "ended.id")}
    FROM ended
"""

_PLACE_COUNTS = f"""
    SELECT count(*) FILTER (WHERE status = {PENDING_SQL} AND expires_at > now()) AS locked,
           count(*) FILTER (WHERE status IN ({CONFIRMED_SQL}, {COMPLETED_SQL}, {NO_SHOW_SQL}))
               AS sold
    FROM reservations WHERE screening_id = $1 AND status <> {CANCELLED_SQL}
"""

_EXPIRED = CancelReason.EXPIRED.value
# A dict lookup instead of an Enum call per row: a full seat map has hundreds of rows.
_STATUS_BY_NAME = {status.value: status for status in BookingStatus}

_SEAT_IN_DETAIL = re.compile(r"\(screening_id, seat_id\)=\(\d+, (\d+)\)")


_ATTACH_PAYMENT = """
    UPDATE bookings SET payment_provider = cinema_audited($2::text, $5::text::jsonb),
        payment_intent_id = $3,
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


def _tickets(row: Any) -> tuple[TicketLine, ...]:
    return tuple(
        TicketLine(t["seat_id"], t["category"], t["ticket_type"], t["price"])
        for t in row["tickets"]
    )


def _booking(
    row: Any,
    seat_ids: tuple[int, ...] | None = None,
    tickets: tuple[TicketLine, ...] | None = None,
) -> Booking:
    return Booking(
        id=row["id"],
        reference=row["reference"],
        user_id=row["user_id"],
        screening_id=row["screening_id"],
        status=BookingStatus(row["status"]),
        seat_ids=tuple(row["seat_ids"]) if seat_ids is None else seat_ids,
        amount=row["amount"],
        currency=row["currency"],
        expires_at=row["expires_at"],
        hold_token=row["hold_token"],
        idempotency_key=row["idempotency_key"],
        cancel_reason=row["cancel_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        payment=_payment(row),
        tickets=_tickets(row) if tickets is None else tickets,
        subtotal=row["subtotal_minor"],
        discount=row["discount_minor"],
        fees=row["fees_minor"],
        promo_code_id=row.get("promo_code_id"),
        promo_code=row.get("promo_code"),
        general_admission=bool(row.get("general_admission")),
        refunded=row.get("refunded_minor") or 0,
    )


_USER_FOREIGN_KEY = "bookings_user_id_fkey"
SCREENING_CANCELLED_STATE = "CC001"  # raised by bookings_refuse_cancelled_screening (db/013)

_CreateBooking = Callable[[Any, NewBooking], Coroutine[Any, Any, Booking]]


def _account_must_exist(create: _CreateBooking) -> _CreateBooking:
    """A booking for a user id with no row (a valid token that outlived its account) is
    refused as that token: UnknownUser, not a foreign-key error. Its transaction rolled back."""

    @functools.wraps(create)
    async def checked(store: Any, new: NewBooking) -> Booking:
        try:
            return await create(store, new)
        except asyncpg.ForeignKeyViolationError as exc:
            if exc.constraint_name == _USER_FOREIGN_KEY:
                raise UnknownUser(new.user_id) from None
            raise

    return checked


# Pauses before each try to end a booking whose commit may have happened unseen (seconds).
_IN_DOUBT_RETRY_DELAYS = (0.0, 0.2, 0.5, 1.0, 2.0)


def _nothing_left_in_doubt(create: _CreateBooking) -> _CreateBooking:
    """A connection lost under the transaction (COMMIT sent, no answer) leaves it unknown
    whether the booking exists. With an Idempotency-Key the client's retry finds out; without
    one nobody ever could, so the booking, if it was made, is ended before the error leaves."""

    @functools.wraps(create)
    async def settled(store: Any, new: NewBooking) -> Booking:
        try:
            return await create(store, new)
        except DatabaseUnavailable as exc:
            if new.idempotency_key is None and exc.reached:
                await _end_in_doubt(store._pool, new.reference)
            raise

    return settled


async def _end_in_doubt(pool: Pool, reference: str) -> None:
    for delay in _IN_DOUBT_RETRY_DELAYS:
        await asyncio.sleep(delay)
        try:
            booking_id = await pool.fetchval(
                "SELECT id FROM bookings WHERE reference = $1", reference
            )
            if booking_id is not None:
                async with audit.audited(pool) as conn:
                    await conn.execute(
                        _END_BOOKINGS,
                        [booking_id],
                        BookingStatus.CANCELLED.value,
                        CancelReason.ABANDONED.value,
                        True,
                    )
            return
        except DatabaseUnavailable as exc:
            log.warning("cannot settle booking %s after a lost commit: %r", reference, exc)
    log.error("booking %s may hold its seats until its deadline (commit unknown)", reference)


async def _ensure_account(pool: Pool, user_id: int) -> None:
    """Asked only when a user's listing came back empty: none, or no such account?"""
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id):
        raise UnknownUser(user_id)


class PgBookingStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @_nothing_left_in_doubt
    @_account_must_exist
    async def create_booking(self, new: NewBooking) -> Booking:
        seat_ids = list(new.seat_ids)
        lines = new.ticket_lines()
        try:
            row = await self._pool.fetchrow(
                _CREATE_BOOKING,
                new.reference,
                new.user_id,
                new.screening_id,
                new.amount,
                new.currency,
                float(new.hold_ttl_seconds),
                new.hold_token,
                new.idempotency_key,
                seat_ids,
                [line.ticket_type for line in lines],
                [line.price for line in lines],
                new.amount if new.subtotal is None else new.subtotal,
                new.discount,
                new.fees,
                new.promo_code_id,
                new.hall_id if new.general_admission else None,
                len(lines) if new.general_admission else 0,
                new.max_tickets_per_customer,
                audit.context(),
            )
        except asyncpg.UniqueViolationError as exc:
            error = _unique_violation(exc, seat_ids)
            if new.general_admission and isinstance(error, SeatsUnavailable):
                # the index caught what the place rules missed: nobody counted what is left
                error = SoldOut(0, certain=False)
            raise error from exc
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == SCREENING_CANCELLED_STATE:  # db/013's trigger: nothing written
                raise ScreeningCancelled(new.screening_id) from None
            raise
        refused = row["refused"]
        if refused is not None or row["taken"]:
            raise _refusal(refused, row, new)
        # The lines as computed (what was stored): no second read on the hot path.
        taken = tuple(row["seat_ids"])  # the seats asked for, or the places handed out
        return _booking(row, seat_ids=taken, tickets=_placed(lines, taken))

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
        if not rows:
            await _ensure_account(self._pool, user_id)
        return [_booking(r) for r in rows]

    async def end_booking(
        self, booking_id: int, target: BookingStatus, reason: str | None
    ) -> Booking | None:
        async with audit.audited(self._pool) as conn:
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

    async def end_started(self, limit: int) -> list[Booking]:
        """db/014_a_lifecycle.sql: PENDING holds of started screenings end (one statement)."""
        return await self._bookings_of(
            "SELECT ended FROM cinema_end_started($1) AS ended", limit, "ended"
        )

    async def finish_ended(self, limit: int) -> list[Booking]:
        """db/014_a_lifecycle.sql: CONFIRMED bookings of ended screenings become COMPLETED
        or NO_SHOW (one statement)."""
        return await self._bookings_of(
            "SELECT booking_id FROM cinema_finish_ended($1)", limit, "booking_id"
        )

    async def _bookings_of(self, query: str, limit: int, column: str) -> list[Booking]:
        async with self._pool.acquire() as conn:
            ids = [r[column] for r in await conn.fetch(query, limit)]
            if not ids:
                return []
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
        if row is None:
            await _ensure_account(self._pool, user_id)
        return None if row is None else _booking(row)

    async def attach_payment(
        self, booking_id: int, provider: str, intent_id: str, client_secret: str
    ) -> Booking:
        async with self._pool.acquire() as conn:
            await conn.execute(
                _ATTACH_PAYMENT, booking_id, provider, intent_id, client_secret, audit.context()
            )
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
            f"SELECT id FROM bookings WHERE status = {CANCELLED_SQL}"
            " AND payment_status IN ('requires_payment', 'failed') ORDER BY id LIMIT $1",
            limit,
        )
        return [r["id"] for r in rows]

    async def cancelled_before_deadline(self, limit: int, after_id: int) -> list[Booking]:
        # A small range of bookings_status_expires_idx: only holds that ended early and
        # whose deadline is still ahead (expired ones are past it by definition).
        rows = await self._pool.fetch(
            f"SELECT {_BOOKING_COLUMNS} FROM bookings b WHERE b.status = {CANCELLED_SQL}"
            " AND b.expires_at > now() AND b.id > $2 ORDER BY b.id LIMIT $1",
            limit,
            after_id,
        )
        return [_booking(r) for r in rows]

    async def live_reservations(self, screening_id: int) -> list[LiveReservation]:
        rows = await self._pool.fetch(
            "SELECT seat_id, status, expires_at <= now() AS lapsed FROM reservations"
            f" WHERE screening_id = $1 AND status <> {CANCELLED_SQL}",
            screening_id,
        )
        statuses = _STATUS_BY_NAME
        return [LiveReservation(r[0], statuses[r[1]], r[2]) for r in rows]

    async def place_counts(self, screening_id: int) -> tuple[int, int]:
        """(locked, sold) places of a general-admission screening: held and not lapsed, paid."""
        row = await self._pool.fetchrow(_PLACE_COUNTS, screening_id)
        return int(row["locked"]), int(row["sold"])


def _placed(lines: tuple[TicketLine, ...], seat_ids: tuple[int, ...]) -> tuple[TicketLine, ...]:
    """The lines with the seat (or place) each one got, ascending seat id, as a read has them.
    A general-admission line names no seat until PostgreSQL hands its place out."""
    return tuple(
        line if line.seat_id == seat else replace(line, seat_id=seat)
        for line, seat in zip(lines, seat_ids, strict=True)
    )


def _refusal(refused: str | None, row: Any, new: NewBooking) -> Exception:
    """What cinema_create_booking's `refused` (or `taken`) means: it wrote nothing."""
    if row["taken"] or refused == "seats_unavailable":
        return SeatsUnavailable(list(row["taken"]))
    if refused == "sold_out":
        return SoldOut(row["available"], row["in_flight"] or 0)
    if refused == "customer_limit_reached" and new.max_tickets_per_customer is not None:
        return CustomerLimitReached(new.max_tickets_per_customer, row["available"])
    return PromoUseRefused(refused or "promo_code_invalid")


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


async def take_seats(conn: Any, screening_id: int, seat_ids: list[int]) -> list[int]:
    """The one way a transaction takes seats: lock their rows in ascending id order, end the
    lapsed holds on them, return the ones still taken (ascending). Empty: the seats are the
    caller's until its transaction ends. Call it inside the caller's transaction."""
    taken: list[int] = await conn.fetchval(_TAKE_SEATS, screening_id, seat_ids)
    return taken


# Shared with the settlement store, which reads bookings the same way.
BOOKING_COLUMNS = _BOOKING_COLUMNS
