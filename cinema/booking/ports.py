"""What the booking service needs from the outside world; the composition root supplies it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from cinema.booking.model import (
    Booking,
    BookingStatus,
    LiveReservation,
    NewBooking,
    PaymentEvent,
    PaymentStatus,
    Settlement,
)
from cinema.catalogue.model import ScreeningSnapshot


@dataclass(frozen=True, slots=True)
class HoldClaim:
    """The fast filter's answer: all seats claimed, some already taken, or no answer at all."""

    claimed: bool
    taken: tuple[int, ...] = ()
    reachable: bool = True


@dataclass(frozen=True, slots=True)
class HeldSeats:
    """One holder's seats of one screening, as the filter keys them."""

    screening_id: int
    seat_ids: tuple[int, ...]
    token: str


@dataclass(frozen=True, slots=True)
class PlacesCheck:
    """The filter's word on a general-admission screening: `left` is how many places
    PostgreSQL last said were free (None: it has not said lately, so nothing is refused)."""

    left: int | None = None
    reachable: bool = True


class Admission(Protocol):
    """The caller's own check of one request (the HTTP edge's rate limit), which must pass
    before the request claims or commits anything. The seat filter may decide it in its
    claim's round trip; otherwise `admit` makes its own."""

    async def admit(self) -> None:
        """Raise the caller's refusal, or return; decided once, then no further round trip."""
        ...


class SeatHolds(Protocol):
    """The fast filter in front of the BookingStore. It may be wrong or empty and only ever
    turns buyers away early; the store decides every sale. A claim lives for a short
    provisional window unless `hold_until` extends it after the commit, so a claim whose
    booking never committed frees its seats within that window on its own."""

    async def claim(
        self,
        screening_id: int,
        seat_ids: Sequence[int],
        token: str,
        ttl_seconds: float,
        admission: Admission | None = None,
    ) -> HoldClaim:
        """Claim every seat for `token` for `ttl_seconds`, or none (the answer names the
        seats someone else holds). Never raises: an unreachable filter answers
        reachable=False. A seat already held by `token` counts as claimed. The filter may
        decide `admission` in the same round trip (a refused request then claims nothing,
        or, where both cannot be one call, a claim the caller must release); it leaves
        an admission it cannot decide to the caller's `admit`."""
        ...

    async def hold_until(
        self, screening_id: int, seat_ids: Sequence[int], token: str, deadline: datetime
    ) -> None:
        """After the commit: the seats are `token`'s until `deadline`, whoever the filter
        thought held them (the store says they are ours); sold markers stay. May raise.
        The caller orders it before any release of the same keys."""
        ...

    async def release(
        self,
        screening_id: int,
        seat_ids: Sequence[int],
        token: str,
        until: datetime | None = None,
    ) -> None:
        """Free the seats `token` still holds (never someone else's). With `until` (the
        hold's deadline), an unreachable filter is retried in the background until it
        answers or `until` passes; without it, or for other errors, this raises."""
        ...

    async def release_many(self, holds: Sequence[HeldSeats]) -> int:
        """`release` for many holders in few round trips, no retries; how many keys it freed."""
        ...

    async def mark_sold(self, screening_id: int, seat_ids: Sequence[int]) -> None:
        """Make the seats' keys permanent "sold" markers, whoever held them."""
        ...

    async def places_left(self, screening_id: int) -> PlacesCheck:
        """The sold-out marker of a general-admission screening. Never raises."""
        ...

    async def note_sold_out(self, screening_id: int, available: int, ttl_seconds: float) -> None:
        """PostgreSQL said only `available` places are free: refuse larger requests for
        `ttl_seconds` at most (any release deletes the marker earlier). May raise."""
        ...


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

    async def place_counts(self, screening_id: int) -> tuple[int, int]:
        """(locked, sold) places of a general-admission screening."""
        ...

    async def expire_booking(self, booking_id: int) -> Booking | None:
        """Cancel it as expired in one transaction if it is still PENDING and past its
        deadline; None if there was nothing to do (paid, cancelled, or not due yet)."""
        ...

    async def expire_overdue(self, limit: int) -> list[Booking]:
        """Cancel up to `limit` overdue PENDING bookings in one transaction; return them."""
        ...

    async def end_started(self, limit: int) -> list[Booking]:
        """Cancel up to `limit` PENDING bookings of screenings that have started (reason
        screening_started) in one transaction, skipping rows locked by others; return them."""
        ...

    async def finish_ended(self, limit: int) -> list[Booking]:
        """Move up to `limit` CONFIRMED bookings of ended screenings to COMPLETED (a ticket
        checked in) or NO_SHOW in one transaction, skipping locked ones; return them."""
        ...

    async def booking_by_reference(self, user_id: int, reference: str) -> Booking | None: ...

    async def attach_payment(
        self, booking_id: int, provider: str, intent_id: str, client_secret: str
    ) -> Booking:
        """Store the booking's intent unless it already has one; return the booking as stored."""
        ...

    async def set_payment_status(
        self, booking_id: int, status: PaymentStatus, expected: PaymentStatus
    ) -> bool:
        """Move the payment from `expected` to `status`; False if it was not `expected`."""
        ...

    async def ended_with_open_intent(self, limit: int) -> list[int]:
        """CANCELLED bookings whose intent was never cancelled at the provider."""
        ...

    async def cancelled_before_deadline(self, limit: int, after_id: int) -> list[Booking]:
        """CANCELLED bookings whose hold deadline is still ahead (ended early: by the user,
        a failed payment, an abandoned checkout), by ascending id above `after_id`. Their
        filter keys may still block their seats; past the deadline they free themselves."""
        ...


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

    def payment_mismatched(self, booking: Booking, event: PaymentEvent) -> None:
        """A success for another amount or currency than the booking's (refunded, unchanged)."""


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

    def payment_mismatched(self, booking: Booking, event: PaymentEvent) -> None:
        return None


@dataclass(frozen=True, slots=True)
class IntentHandle:
    """A payment intent as the customer's client needs it to pay."""

    id: str
    client_secret: str


class PaymentGateway(Protocol):
    """The payment provider. Every call may raise PaymentProviderUnavailable."""

    provider: str

    async def create_intent(self, booking: Booking) -> IntentHandle:
        """Idempotent per booking: calling twice for one booking yields one intent."""
        ...

    async def cancel_intent(self, intent_id: str) -> bool:
        """Cancel an unpaid intent; False when it can no longer be cancelled (paid, gone)."""
        ...

    async def refund(self, booking: Booking) -> str:
        """Refund the booking's payment in full (idempotent per booking); the refund id."""
        ...

    def parse_event(self, payload: bytes, signature: str | None) -> PaymentEvent:
        """Verify the signature over the raw payload and read the event; InvalidWebhook if not."""
        ...


class SettlementStore(Protocol):
    async def settle(self, event: PaymentEvent) -> Settlement:
        """Record the event id and apply its effect in one transaction (see rules.settle_action);
        a recorded event id is a DUPLICATE and changes nothing."""
        ...

    async def record_refund(self, booking_id: int, refund_id: str) -> None: ...


class FollowUps(Protocol):
    """Work that must happen after a change, off the request path, retried until it succeeds.
    Implemented by Taskiq tasks the worker runs (tasks/follow_ups.py), with retried jobs in
    this process (cinema/background.py) when a task cannot be queued or FOLLOW_UPS=inprocess."""

    async def cancel_payment(self, booking_id: int) -> None:
        """Cancel an ended, unpaid booking's intent at the provider."""
        ...

    async def send_ticket(self, booking_id: int) -> None:
        """Email a CONFIRMED booking's ticket (at most once)."""
        ...


class NoFollowUps:
    async def cancel_payment(self, booking_id: int) -> None:
        return None

    async def send_ticket(self, booking_id: int) -> None:
        return None
