"""Booking rules as plain functions: seat selection, the state machine, seat status, pricing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum

from cinema.booking.errors import (
    InvalidSelection,
    NotGeneralAdmission,
    ScreeningStarted,
    SeatsNotInHall,
)
from cinema.booking.model import (
    BookingStatus,
    LiveReservation,
    PaymentEventKind,
    PaymentStatus,
    SeatStatus,
)
from cinema.catalogue.model import GA_CATEGORY, ScreeningSnapshot
from cinema.pricing import rules as pricing
from cinema.pricing.model import TicketLine, TicketRequest

MAX_SEATS_PER_BOOKING = 10

# A state only moves forward. CONFIRMED ends when its screening does (the worker:
# COMPLETED if a ticket was checked in, else NO_SHOW); CANCELLED, COMPLETED, NO_SHOW are
# terminal: no customer cancel or refund, no payment, no check-in changes them.
_TRANSITIONS: dict[BookingStatus, frozenset[BookingStatus]] = {
    BookingStatus.PENDING: frozenset({BookingStatus.CONFIRMED, BookingStatus.CANCELLED}),
    BookingStatus.CONFIRMED: frozenset({BookingStatus.COMPLETED, BookingStatus.NO_SHOW}),
    BookingStatus.CANCELLED: frozenset(),
    BookingStatus.COMPLETED: frozenset(),
    BookingStatus.NO_SHOW: frozenset(),
}
# Bookings whose screening is over: their seats stay sold, nothing changes them any more.
SHOW_OVER: frozenset[BookingStatus] = frozenset({BookingStatus.COMPLETED, BookingStatus.NO_SHOW})
SOLD_STATUSES: frozenset[BookingStatus] = frozenset({BookingStatus.CONFIRMED}) | SHOW_OVER


def can_transition(current: BookingStatus, target: BookingStatus) -> bool:
    return target in _TRANSITIONS[current]


def normalize_selection(seat_ids: Iterable[int]) -> tuple[int, ...]:
    """1 to 10 distinct seat ids, returned in ascending order (the lock order)."""
    ids = list(seat_ids)
    if not ids:
        raise InvalidSelection("choose at least one seat")
    if len(ids) > MAX_SEATS_PER_BOOKING:
        raise InvalidSelection(f"at most {MAX_SEATS_PER_BOOKING} seats per booking")
    unique = set(ids)
    if len(unique) != len(ids):
        raise InvalidSelection("a seat id appears more than once")
    return tuple(sorted(unique))


def normalize_quantity(quantity: int) -> int:
    """1 to MAX_SEATS_PER_BOOKING general-admission places."""
    if quantity < 1:
        raise InvalidSelection("book at least one place")
    if quantity > MAX_SEATS_PER_BOOKING:
        raise InvalidSelection(f"at most {MAX_SEATS_PER_BOOKING} tickets per booking")
    return quantity


def ensure_form(snapshot: ScreeningSnapshot, general_admission: bool) -> None:
    """Seats for a seated screening, a quantity for a general-admission one."""
    if snapshot.screening.general_admission and not general_admission:
        raise NotGeneralAdmission(
            "this screening is general admission: book a quantity or tickets, not seats"
        )
    if general_admission and not snapshot.screening.general_admission:
        raise NotGeneralAdmission("this screening has a seat map: book seat_ids or seats")


def screening_started(starts_at: datetime, now: datetime) -> bool:
    """The one "started" rule: from its start a screening takes no booking and no payment
    (a late payment is refunded; the worker ends its PENDING holds)."""
    return starts_at <= now


def ensure_bookable(snapshot: ScreeningSnapshot, seat_ids: tuple[int, ...], now: datetime) -> None:
    if screening_started(snapshot.screening.starts_at, now):
        raise ScreeningStarted(snapshot.screening.id)
    foreign = [s for s in seat_ids if s not in snapshot.seats_by_id]
    if foreign:
        raise SeatsNotInHall(foreign)


def place_counts(capacity: int, locked: int, sold: int) -> dict[SeatStatus, int]:
    """A general-admission screening's places by status (lapsed holds count as available)."""
    return {
        SeatStatus.AVAILABLE: max(capacity - locked - sold, 0),
        SeatStatus.LOCKED: locked,
        SeatStatus.SOLD: sold,
    }


def price(snapshot: ScreeningSnapshot, seat_ids: tuple[int, ...]) -> int:
    """Sum of the seats' prices by category, in minor units."""
    prices = snapshot.screening.prices
    return sum(prices[snapshot.seats_by_id[s].category] for s in seat_ids)


def seat_ids_of(requests: Iterable[TicketRequest]) -> list[int]:
    ids = []
    for request in requests:
        if request.seat_id is None:
            raise InvalidSelection("this screening has a seat map: name a seat for each ticket")
        ids.append(request.seat_id)
    return ids


def priced_lines(
    snapshot: ScreeningSnapshot, requests: Iterable[TicketRequest]
) -> tuple[TicketLine, ...]:
    """One priced line per seat, ascending seat id (the lock order, parallel to the seats)."""
    screening, seats = snapshot.screening, snapshot.seats_by_id
    ordered = sorted(requests, key=lambda r: r.seat_id or 0)
    return pricing.ticket_lines(
        screening.ticket_types,
        screening.prices,
        ordered,
        lambda r: seats[r.seat_id or 0].category,
    )


def priced_places(
    snapshot: ScreeningSnapshot, requests: Iterable[TicketRequest]
) -> tuple[TicketLine, ...]:
    """General admission: one priced line per place, in the category `general`."""
    screening = snapshot.screening
    return pricing.ticket_lines(
        screening.ticket_types, screening.prices, requests, lambda r: GA_CATEGORY
    )


def same_ticket_types(earlier: Sequence[TicketLine], now: Sequence[TicketLine]) -> bool:
    """Whether a replayed request asks for the same ticket types as the booking it replays
    (a booking written before ticket types existed has no lines to compare)."""
    if not earlier:
        return True
    return [t.ticket_type for t in earlier] == [t.ticket_type for t in now]


def seat_status(reservation: LiveReservation | None) -> SeatStatus:
    """A hold past its deadline is AVAILABLE even before any cleaner has cancelled it."""
    if reservation is None:
        return SeatStatus.AVAILABLE
    if reservation.status in SOLD_STATUSES:
        return SeatStatus.SOLD
    if reservation.status is BookingStatus.PENDING and not reservation.deadline_passed:
        return SeatStatus.LOCKED
    return SeatStatus.AVAILABLE


class SettleAction(StrEnum):
    CONFIRM = "confirm"  # PENDING -> CONFIRMED, seats SOLD
    RECLAIM = "reclaim"  # ended, but paid: confirm only if every seat can be taken again
    CANCEL = "cancel"  # PENDING -> CANCELLED, seats freed
    REFUND_MISMATCH = "refund_mismatch"  # paid another amount or currency: booking unchanged
    REFUND_STARTED = "refund_started"  # paid once its screening had started: ended, refunded
    IGNORE = "ignore"


def pays_booking(
    amount: int, currency: str, paid_amount: int | None, paid_currency: str | None
) -> bool:
    """A success counts only for exactly the booking's amount in the booking's currency; an
    event that does not say both pays nothing (the intent id alone is not enough)."""
    return (
        paid_amount is not None
        and paid_currency is not None
        and paid_amount == amount
        and paid_currency.upper() == currency.upper()
    )


def settle_action(
    status: BookingStatus,
    payment: PaymentStatus | None,
    kind: PaymentEventKind,
    *,
    paid_in_full: bool = True,
    started: bool = False,
) -> SettleAction:
    """What a payment event does to a booking. States only move forward: a failure after a
    success changes nothing; a success after the booking ended tries to take its seats back
    (the money is real), and is refunded if they are gone. A success for another amount or
    currency (`paid_in_full` false) never confirms: it is refunded and the booking left as is.
    Nor does a success once the screening has `started` (screening_started): the booking
    ends (if PENDING) and the money goes back."""
    if kind is PaymentEventKind.SUCCEEDED:
        if not paid_in_full and payment not in (
            PaymentStatus.SUCCEEDED,
            PaymentStatus.REFUNDED,
            PaymentStatus.REFUND_FAILED,
        ):
            return SettleAction.REFUND_MISMATCH
        reclaimable = status is BookingStatus.CANCELLED and payment not in (
            PaymentStatus.REFUND_PENDING,
            PaymentStatus.REFUNDED,
            PaymentStatus.REFUND_FAILED,  # refunded by staff: its seats were given back
        )
        if started and (status is BookingStatus.PENDING or reclaimable):
            return SettleAction.REFUND_STARTED
        if status is BookingStatus.PENDING:
            return SettleAction.CONFIRM
        if reclaimable:
            return SettleAction.RECLAIM
        return SettleAction.IGNORE
    if kind in (PaymentEventKind.FAILED, PaymentEventKind.CANCELED) and (
        status is BookingStatus.PENDING
    ):
        return SettleAction.CANCEL
    return SettleAction.IGNORE
