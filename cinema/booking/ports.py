"""What the booking service needs from the outside world; the composition root supplies it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cinema.booking.model import Booking, BookingStatus, LiveReservation, NewBooking
from cinema.catalogue.model import ScreeningSnapshot


@dataclass(frozen=True, slots=True)
class HoldClaim:
    """The fast filter's answer: all seats claimed, some already taken, or no answer at all."""

    claimed: bool
    taken: tuple[int, ...] = ()
    reachable: bool = True


class SeatHolds(Protocol):
    async def claim(
        self, screening_id: int, seat_ids: Sequence[int], token: str, ttl_seconds: int
    ) -> HoldClaim: ...

    async def release(self, screening_id: int, seat_ids: Sequence[int], token: str) -> None: ...


class BookingStore(Protocol):
    async def create_booking(self, new: NewBooking) -> Booking:
        """Lock the seats, re-check them, write booking and reservations in one transaction.
        Raises SeatsUnavailable, ReferenceTaken or IdempotencyKeyTaken."""
        ...

    async def booking(self, booking_id: int) -> Booking | None: ...

    async def booking_by_idempotency_key(self, user_id: int, key: str) -> Booking | None: ...

    async def bookings_of_user(self, user_id: int, limit: int, offset: int) -> list[Booking]: ...

    async def end_booking(
        self, booking_id: int, target: BookingStatus, reason: str | None
    ) -> Booking | None:
        """Move a PENDING booking to `target`; None if it was not PENDING."""
        ...

    async def live_reservations(self, screening_id: int) -> list[LiveReservation]: ...

    async def expire_booking(self, booking_id: int) -> Booking | None:
        """Cancel it as expired in one transaction if it is still PENDING and past its
        deadline; None if there was nothing to do (paid, cancelled, or not due yet)."""
        ...

    async def expire_overdue(self, limit: int) -> list[Booking]:
        """Cancel up to `limit` overdue PENDING bookings in one transaction; return them."""
        ...


class ScreeningCatalogue(Protocol):
    async def snapshot(self, screening_id: int) -> ScreeningSnapshot | None: ...


class ExpiryScheduler(Protocol):
    async def schedule(self, booking: Booking) -> None: ...


class NoExpiryScheduler:
    """Used where no worker runs: deadlines still hold, as PostgreSQL enforces them on read."""

    async def schedule(self, booking: Booking) -> None:
        return None


class BookingEndedHook(Protocol):
    """Told after a PENDING booking ended unpaid (expired or cancelled by its user) and its
    seats were released. The payments side plugs in here to cancel the payment intent."""

    async def booking_ended(self, booking: Booking) -> None: ...
