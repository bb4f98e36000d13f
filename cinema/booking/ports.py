"""What the booking service needs from the outside world; the composition root supplies it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

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


class ScreeningCatalogue(Protocol):
    async def snapshot(self, screening_id: int) -> ScreeningSnapshot | None: ...


class ExpiryScheduler(Protocol):
    async def schedule(self, booking: Booking) -> None: ...


class NoExpiryScheduler:
    """Used where no worker runs: deadlines still hold, as PostgreSQL enforces them on read."""

    async def schedule(self, booking: Booking) -> None:
        return None


ConflictSource = Literal["redis", "postgres"]


class BookingEvents(Protocol):
    """What happened to bookings, told to whoever counts and logs it (metrics, JSON logs).
    Every state change of a booking goes through one of these; calls must not block."""

    def created(self, booking: Booking) -> None: ...

    def conflicted(self, caught_by: ConflictSource, seat_ids: Sequence[int]) -> None: ...

    def redis_fallback(self) -> None: ...

    def confirmed(self, booking: Booking) -> None: ...

    def cancelled(self, booking: Booking, reason: str | None) -> None: ...

    def expired(self, booking: Booking) -> None: ...


class NoBookingEvents:
    """Tells nobody: for tools and tests that do not care."""

    def created(self, booking: Booking) -> None:
        return None

    def conflicted(self, caught_by: ConflictSource, seat_ids: Sequence[int]) -> None:
        return None

    def redis_fallback(self) -> None:
        return None

    def confirmed(self, booking: Booking) -> None:
        return None

    def cancelled(self, booking: Booking, reason: str | None) -> None:
        return None

    def expired(self, booking: Booking) -> None:
        return None
