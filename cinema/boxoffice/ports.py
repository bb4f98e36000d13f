"""What the box office needs from the store; the composition root supplies it."""

from __future__ import annotations

from typing import Protocol

from cinema.boxoffice.model import (
    Admission,
    BookingDetail,
    BookingFilter,
    FoundBooking,
    TicketRecord,
)


class DeskStore(Protocol):
    async def find_bookings(self, search: BookingFilter) -> list[FoundBooking]:
        """Bookings matching every given filter, newest first."""
        ...

    async def booking_detail(self, booking_id: int) -> BookingDetail | None: ...

    async def tickets_of(self, booking_id: int) -> list[TicketRecord]: ...

    async def check_in(
        self, reservation_id: int, staff_id: int, screening_id: int | None
    ) -> Admission | None:
        """Set the ticket's check-in time if it has none and is valid (for `screening_id`,
        if given), in one compare-and-set statement. `admitted` says whether this call set
        it; otherwise the ticket as it is now, for the refusal. None: no such ticket."""
        ...
