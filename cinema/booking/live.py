"""Seat changes as viewers of a screening see them: what a booking's state change did to its
seats (held, released, sold). The booking service already tells every state change to its
BookingEvents port; `LiveSeatEvents` turns those calls into SeatChanges for a SeatChangeSink
(cinema/live_redis.py publishes them through Redis pub/sub), so the booking path is unchanged
and never waits for a viewer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from cinema.booking.model import Booking, PaymentEvent
from cinema.booking.ports import BookingEvents, ConflictSource


class ChangeKind(StrEnum):
    HELD = "held"  # a PENDING booking took the seats
    RELEASED = "released"  # cancelled, expired, payment failed: the seats are free again
    SOLD = "sold"  # paid (confirmed by the provider's webhook)


@dataclass(frozen=True, slots=True)
class SeatChange:
    kind: ChangeKind
    screening_id: int
    seat_ids: tuple[int, ...]
    at: float  # unix time of the change (viewers' delivery latency is measured from it)


class SeatChangeSink(Protocol):
    def publish(self, change: SeatChange) -> None:
        """Queue the change for every viewer; never blocks, never raises (a change that
        cannot be told is dropped: viewers' resyncs correct what they missed)."""
        ...


class LiveSeatEvents:
    """The BookingEvents port, told to the live seat status."""

    def __init__(self, sink: SeatChangeSink, clock: Callable[[], float] = time.time) -> None:
        self._sink = sink
        self._clock = clock

    def _tell(self, kind: ChangeKind, booking: Booking) -> None:
        self._sink.publish(SeatChange(kind, booking.screening_id, booking.seat_ids, self._clock()))

    def created(self, booking: Booking) -> None:
        self._tell(ChangeKind.HELD, booking)

    def confirmed(self, booking: Booking) -> None:
        self._tell(ChangeKind.SOLD, booking)

    def cancelled(self, booking: Booking, reason: str | None) -> None:
        self._tell(ChangeKind.RELEASED, booking)

    def expired(self, booking: Booking) -> None:
        self._tell(ChangeKind.RELEASED, booking)

    def conflicted(self, caught_by: ConflictSource, seat_ids: Sequence[int]) -> None:
        return None

    def redis_fallback(self) -> None:
        return None

    def payment_mismatched(self, booking: Booking, event: PaymentEvent) -> None:
        return None


class AllEvents:
    """Tells each of several BookingEvents (metrics and logs, live seat status) in turn."""

    def __init__(self, *targets: BookingEvents) -> None:
        self._targets = targets

    def created(self, booking: Booking) -> None:
        for target in self._targets:
            target.created(booking)

    def conflicted(self, caught_by: ConflictSource, seat_ids: Sequence[int]) -> None:
        for target in self._targets:
            target.conflicted(caught_by, seat_ids)

    def redis_fallback(self) -> None:
        for target in self._targets:
            target.redis_fallback()

    def confirmed(self, booking: Booking) -> None:
        for target in self._targets:
            target.confirmed(booking)

    def cancelled(self, booking: Booking, reason: str | None) -> None:
        for target in self._targets:
            target.cancelled(booking, reason)

    def expired(self, booking: Booking) -> None:
        for target in self._targets:
            target.expired(booking)

    def payment_mismatched(self, booking: Booking, event: PaymentEvent) -> None:
        for target in self._targets:
            target.payment_mismatched(booking, event)
