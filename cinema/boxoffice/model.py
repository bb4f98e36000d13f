"""Box-office types: search filters, a booking's tickets and history, check-in answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cinema.booking.model import Booking, BookingStatus


@dataclass(frozen=True, slots=True)
class BookingFilter:
    reference: str | None = None
    email: str | None = None
    screening_id: int | None = None
    status: BookingStatus | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class FoundBooking:
    booking: Booking
    email: str


@dataclass(frozen=True, slots=True)
class TicketRecord:
    """One ticket: one reservation row (a seat, or a general-admission place)."""

    reservation_id: int
    seat_id: int | None
    row: str | None
    number: int | None
    category: str | None
    ticket_type: str | None
    status: BookingStatus
    checked_in_at: datetime | None
    checked_in_by: int | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A state change of the booking, from whatever records it: `source` "booking" (its own
    timestamps), "payment" (the provider's events), "check_in", "audit" (the audit log's
    records of it: `detail` says who)."""

    at: datetime
    source: str
    event: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class BookingDetail:
    found: FoundBooking
    tickets: tuple[TicketRecord, ...]
    refund_id: str | None
    tickets_sent_at: datetime | None
    history: tuple[HistoryEntry, ...]


@dataclass(frozen=True, slots=True)
class Admission:
    """What a scanner learns about a ticket; `admitted` True only for the one who checked it in."""

    admitted: bool
    booking_id: int
    screening_id: int
    seat_id: int | None
    ticket_type: str | None
    reservation_status: BookingStatus
    booking_status: BookingStatus
    payment_status: str | None
    checked_in_at: datetime | None
    checked_in_by: int | None = None
    checked_in_by_email: str | None = None
