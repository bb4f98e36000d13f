"""The box office: find bookings, show a booking whole, check tickets in at the door.

Check-in needs PostgreSQL only (no Redis): the compare-and-set in the store admits a ticket
exactly once, however many scanners submit its code at the same instant."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from cinema.booking import rules
from cinema.booking.errors import BookingNotFound
from cinema.booking.model import Booking, BookingStatus, PaymentStatus
from cinema.boxoffice.codes import TicketCodes, redacted
from cinema.boxoffice.errors import AlreadyCheckedIn, TicketNotFound, TicketNotValid
from cinema.boxoffice.model import Admission, BookingDetail, BookingFilter, FoundBooking
from cinema.boxoffice.ports import DeskStore

log = logging.getLogger(__name__)

_REFUNDED = frozenset(
    {
        PaymentStatus.REFUND_PENDING.value,
        PaymentStatus.REFUNDED.value,
        PaymentStatus.REFUND_FAILED.value,
    }
)


@dataclass(frozen=True, slots=True)
class OwnerTicket:
    """A ticket as its owner sees it: `code` only while the booking is CONFIRMED."""

    seat_id: int | None
    ticket_type: str | None
    code: str | None
    checked_in_at: datetime | None


class BoxOffice:
    def __init__(self, store: DeskStore, codes: TicketCodes) -> None:
        self._store = store
        self._codes = codes

    async def find(self, search: BookingFilter) -> list[FoundBooking]:
        return await self._store.find_bookings(search)

    async def detail(self, booking_id: int) -> BookingDetail:
        detail = await self._store.booking_detail(booking_id)
        if detail is None:
            raise BookingNotFound(booking_id)
        return detail

    async def owner_tickets(self, booking: Booking) -> list[OwnerTicket]:
        """The booking's tickets for its owner (the caller checked ownership), ascending seat
        id (general admission last): a code for each live ticket of a valid booking."""
        # A refunded ticket's row is CANCELLED; the rest of a partly refunded booking stays.
        valid = booking.status is BookingStatus.CONFIRMED
        tickets = sorted(
            await self._store.tickets_of(booking.id),
            key=lambda t: (t.seat_id is None, t.seat_id or 0, t.reservation_id),
        )
        return [
            OwnerTicket(
                t.seat_id,
                t.ticket_type,
                self._codes.code(t.reservation_id)
                if valid and t.status is BookingStatus.CONFIRMED
                else None,
                t.checked_in_at,
            )
            for t in tickets
        ]

    def code_of(self, reservation_id: int) -> str:
        return self._codes.code(reservation_id)

    async def check_in(self, code: str, staff_id: int, screening_id: int | None) -> Admission:
        reservation_id = self._codes.reservation_id(code)
        if reservation_id is None:
            log.info("check-in refused: unknown or forged code %s", redacted(code))
            raise TicketNotFound()
        found = await self._store.check_in(reservation_id, staff_id, screening_id)
        if found is None:
            raise TicketNotFound()
        if found.admitted:
            return found
        raise _refusal(found, screening_id)


def _refusal(found: Admission, screening_id: int | None) -> Exception:
    """Why a ticket that exists was not admitted, most telling reason first."""
    if found.checked_in_at is not None:
        return AlreadyCheckedIn(found.checked_in_at, found.checked_in_by, found.checked_in_by_email)
    ended = found.booking_status is BookingStatus.CANCELLED or (
        found.reservation_status is BookingStatus.CANCELLED
    )
    if found.payment_status in _REFUNDED and ended:
        return TicketNotValid("booking_refunded", "this ticket was refunded")
    if found.booking_status is BookingStatus.CANCELLED or (
        found.reservation_status is BookingStatus.CANCELLED
    ):
        return TicketNotValid("booking_cancelled", "this ticket's booking was cancelled")
    if found.booking_status in rules.SHOW_OVER:
        return TicketNotValid(
            "screening_over",
            f"this ticket's screening is over (booking {found.booking_status.value})",
        )
    if found.booking_status is not BookingStatus.CONFIRMED:
        return TicketNotValid(
            "booking_not_confirmed",
            f"this ticket's booking is {found.booking_status.value}, not paid",
        )
    if screening_id is not None and found.screening_id != screening_id:
        return TicketNotValid(
            "other_screening",
            f"this ticket is for screening {found.screening_id}, not {screening_id}",
            screening_id=found.screening_id,
        )
    return TicketNotValid("not_admissible", "this ticket cannot be checked in")
