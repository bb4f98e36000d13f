"""The box office's reads and the check-in compare-and-set, in PostgreSQL."""

from __future__ import annotations

from typing import Any

from cinema.booking.model import BookingStatus
from cinema.boxoffice.model import (
    Admission,
    BookingDetail,
    BookingFilter,
    FoundBooking,
    HistoryEntry,
    TicketRecord,
)
from cinema.store import audit
from cinema.store.bookings import BOOKING_COLUMNS, CONFIRMED_SQL, booking_from_row
from cinema.store.pool import Pool

# Each filter is "unset or equal"; the planner picks the index of whichever is given
# (reference, the user's email, screening: db/011). The page's ids come first and the
# booking's columns (subqueries per booking: seats, tickets) only for that page: computed
# before LIMIT/OFFSET they cost one subquery per booking of the whole table (a schemathesis
# request with ?offset=8445 timed out after 10 s on the test database).
_FIND = f"""
    SELECT {BOOKING_COLUMNS}, u.email
    FROM (
        SELECT b.id, b.created_at
        FROM bookings b JOIN users u ON u.id = b.user_id
        WHERE ($1::text IS NULL OR b.reference = $1)
          AND ($2::text IS NULL OR lower(u.email) = lower($2))
          AND ($3::bigint IS NULL OR b.screening_id = $3)
          AND ($4::booking_status IS NULL OR b.status = $4)
        ORDER BY b.created_at DESC, b.id DESC
        LIMIT $5 OFFSET $6
    ) page
    JOIN bookings b ON b.id = page.id JOIN users u ON u.id = b.user_id
    ORDER BY page.created_at DESC, page.id DESC
"""

_ONE = f"""
    SELECT {BOOKING_COLUMNS}, u.email, b.refund_id, b.tickets_sent_at
    FROM bookings b JOIN users u ON u.id = b.user_id WHERE b.id = $1
"""

_TICKETS = """
    SELECT r.id, r.seat_id, s.row_label, s.number, s.category, r.status,
           r.ticket_type, r.checked_in_at, r.checked_in_by
    FROM reservations r LEFT JOIN seats s ON s.id = r.seat_id
    WHERE r.booking_id = $1
    ORDER BY s.row_index NULLS LAST, s.number NULLS LAST, r.id
"""

_PAYMENT_EVENTS = """
    SELECT received_at, type, outcome FROM payment_events WHERE booking_id = $1
    ORDER BY received_at, event_id
"""

_AUDIT_ENTRIES = """
    SELECT at, action, actor_role, actor_id FROM audit_log WHERE booking_id = $1
    ORDER BY at, id
"""

# A refunded ticket's reservation is CANCELLED (db/013); a partly refunded booking stays
# CONFIRMED, so its other tickets still admit. The compare-and-set: of ten scanners at
# once, one UPDATE finds checked_in_at NULL; the others wait for its row lock, re-check
# the WHERE on the committed row and update nothing.
_CHECK_IN = f"""
    UPDATE reservations r SET checked_in_at = now(),
        checked_in_by = cinema_audited($2::bigint, $4::text::jsonb)
    FROM bookings b
    WHERE r.id = $1 AND b.id = r.booking_id AND r.checked_in_at IS NULL
      AND r.status = {CONFIRMED_SQL} AND b.status = {CONFIRMED_SQL}
      AND ($3::bigint IS NULL OR r.screening_id = $3)
    RETURNING r.booking_id, r.screening_id, r.seat_id, r.status, r.checked_in_at,
              r.checked_in_by, r.ticket_type,
              b.status AS booking_status, b.payment_status
"""

# A new statement (a new snapshot): a scanner that lost the race sees the winner's commit.
_TICKET_NOW = """
    SELECT r.booking_id, r.screening_id, r.seat_id, r.status, r.checked_in_at,
           r.checked_in_by, r.ticket_type,
           b.status AS booking_status, b.payment_status, u.email AS checked_in_by_email
    FROM reservations r JOIN bookings b ON b.id = r.booking_id
    LEFT JOIN users u ON u.id = r.checked_in_by
    WHERE r.id = $1
"""

_STATUS = {s.value: s for s in BookingStatus}


def _ticket(row: Any) -> TicketRecord:
    return TicketRecord(
        reservation_id=row["id"],
        seat_id=row["seat_id"],
        row=row["row_label"],
        number=row["number"],
        category=row["category"],
        ticket_type=row["ticket_type"],
        status=_STATUS[row["status"]],
        checked_in_at=row["checked_in_at"],
        checked_in_by=row["checked_in_by"],
    )


def _admission(row: Any, admitted: bool) -> Admission:
    return Admission(
        admitted=admitted,
        booking_id=row["booking_id"],
        screening_id=row["screening_id"],
        seat_id=row["seat_id"],
        ticket_type=row["ticket_type"],
        reservation_status=_STATUS[row["status"]],
        booking_status=_STATUS[row["booking_status"]],
        payment_status=row["payment_status"],
        checked_in_at=row["checked_in_at"],
        checked_in_by=row["checked_in_by"],
        checked_in_by_email=None if admitted else row["checked_in_by_email"],
    )


_SOURCE_RANK = {"booking": 0, "payment": 1, "audit": 2, "check_in": 3}


def _history(
    row: Any, tickets: list[TicketRecord], events: list[Any], audits: list[Any]
) -> list[HistoryEntry]:
    entries = [HistoryEntry(row["created_at"], "booking", "created", BookingStatus.PENDING.value)]
    if row["status"] != BookingStatus.PENDING.value:
        entries.append(
            HistoryEntry(row["updated_at"], "booking", row["status"], row["cancel_reason"])
        )
    entries += [HistoryEntry(e["received_at"], "payment", e["type"], e["outcome"]) for e in events]
    if row["tickets_sent_at"] is not None:
        entries.append(HistoryEntry(row["tickets_sent_at"], "booking", "tickets_sent"))
    entries += [
        HistoryEntry(t.checked_in_at, "check_in", "checked_in", f"seat {t.seat_id}")
        for t in tickets
        if t.checked_in_at is not None
    ]
    entries += [
        HistoryEntry(
            a["at"],
            "audit",
            a["action"],
            a["actor_role"] if a["actor_id"] is None else f"{a['actor_role']} {a['actor_id']}",
        )
        for a in audits
    ]
    # At the same instant: the booking's own entry, the payment, its audit record, the door.
    return sorted(entries, key=lambda e: (e.at, _SOURCE_RANK.get(e.source, 2)))


class PgDeskStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def find_bookings(self, search: BookingFilter) -> list[FoundBooking]:
        rows = await self._pool.fetch(
            _FIND,
            search.reference,
            search.email,
            search.screening_id,
            None if search.status is None else search.status.value,
            search.limit,
            search.offset,
        )
        return [FoundBooking(booking_from_row(r), r["email"]) for r in rows]

    async def booking_detail(self, booking_id: int) -> BookingDetail | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_ONE, booking_id)
            if row is None:
                return None
            tickets = [_ticket(t) for t in await conn.fetch(_TICKETS, booking_id)]
            events = list(await conn.fetch(_PAYMENT_EVENTS, booking_id))
            audits = list(await conn.fetch(_AUDIT_ENTRIES, booking_id))
        return BookingDetail(
            found=FoundBooking(booking_from_row(row), row["email"]),
            tickets=tuple(tickets),
            refund_id=row["refund_id"],
            tickets_sent_at=row["tickets_sent_at"],
            history=tuple(_history(row, tickets, events, audits)),
        )

    async def tickets_of(self, booking_id: int) -> list[TicketRecord]:
        return [_ticket(t) for t in await self._pool.fetch(_TICKETS, booking_id)]

    async def check_in(
        self, reservation_id: int, staff_id: int, screening_id: int | None
    ) -> Admission | None:
        row = await self._pool.fetchrow(
            _CHECK_IN, reservation_id, staff_id, screening_id, audit.context()
        )
        if row is not None:
            return _admission(row, admitted=True)
        now = await self._pool.fetchrow(_TICKET_NOW, reservation_id)
        return None if now is None else _admission(now, admitted=False)
