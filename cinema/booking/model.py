"""Booking types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cinema.pricing.model import DEFAULT_TICKET_TYPE, TicketLine
from cinema.refunds.model import RefundEvent


class BookingStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"  # the screening ended and a ticket was checked in (terminal)
    NO_SHOW = "NO_SHOW"  # the screening ended and no ticket was checked in (terminal)


class SeatStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    LOCKED = "LOCKED"
    SOLD = "SOLD"


class CancelReason(StrEnum):
    EXPIRED = "expired"
    USER = "cancelled_by_user"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_CANCELED = "payment_canceled"
    PAYMENT_UNAVAILABLE = "payment_provider_unavailable"  # no payment could be started
    ABANDONED = "abandoned"  # the commit's answer was lost and no Idempotency-Key can find it
    SCREENING_STARTED = "screening_started"  # still unpaid when its screening started


class PaymentStatus(StrEnum):
    REQUIRES_PAYMENT = "requires_payment"  # intent created, waiting for the customer
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    REFUND_PENDING = "refund_pending"  # paid after its seats were gone; refund not yet done
    REFUNDED = "refunded"
    REFUND_FAILED = "refund_failed"  # a refund the provider could not make (staff follow up)


@dataclass(frozen=True, slots=True)
class Payment:
    """The booking's payment at the provider; no card data, only the intent's handle."""

    provider: str
    intent_id: str
    client_secret: str
    status: PaymentStatus


@dataclass(frozen=True, slots=True)
class Booking:
    id: int
    reference: str
    user_id: int
    screening_id: int
    status: BookingStatus
    seat_ids: tuple[int, ...]
    amount: int  # minor units
    currency: str
    expires_at: datetime
    hold_token: str
    idempotency_key: str | None
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    payment: Payment | None = None
    tickets: tuple[TicketLine, ...] = ()  # one per seat, ascending seat id
    subtotal: int | None = None  # None: as amount (no discount, no fees)
    discount: int = 0
    fees: int = 0
    promo_code: str | None = None
    promo_code_id: int | None = None

    @property
    def subtotal_minor(self) -> int:
        return self.amount if self.subtotal is None else self.subtotal

    general_admission: bool = False  # seat_ids are then places, not seats a client knows
    refunded: int = 0  # minor units refunded or being refunded (db/013: never above amount)


@dataclass(frozen=True, slots=True)
class NewBooking:
    """A booking about to be written: everything but what the database assigns."""

    reference: str
    user_id: int
    screening_id: int
    hall_id: int
    seat_ids: tuple[int, ...]  # ascending: the lock order
    amount: int
    currency: str
    hold_ttl_seconds: int
    hold_token: str
    idempotency_key: str | None
    lines: tuple[TicketLine, ...] = ()  # parallel to seat_ids; () only in tools and tests
    subtotal: int | None = None  # None: amount
    discount: int = 0
    fees: int = 0
    promo_code_id: int | None = None

    def ticket_lines(self) -> tuple[TicketLine, ...]:
        """The lines to store: the priced ones, or (tools, tests) the default type with the
        amount spread over the seats."""
        if self.lines:
            return self.lines
        each = self.amount // max(1, len(self.seat_ids))
        return tuple(TicketLine(s, "", DEFAULT_TICKET_TYPE, each) for s in self.seat_ids)

    quantity: int = 0  # general admission: places to take (seat_ids is then empty)
    general_admission: bool = False  # hall_id's seats are the screening's places
    max_tickets_per_customer: int | None = None


@dataclass(frozen=True, slots=True)
class LiveReservation:
    """A non-cancelled reservation as the seat map sees it."""

    seat_id: int
    status: BookingStatus
    deadline_passed: bool


@dataclass(frozen=True, slots=True)
class SeatMapEntry:
    """One seat of a seat map, named as the API names it (`seat` is the number in its row)."""

    id: int
    row: str
    seat: int
    category: str
    status: SeatStatus


@dataclass(frozen=True, slots=True)
class SeatMap:
    screening_id: int
    seats: tuple[SeatMapEntry, ...]
    totals: dict[SeatStatus, int] | None = None  # general admission: places, never listed

    def counts(self) -> dict[SeatStatus, int]:
        """Seats (or places) per status, in one pass."""
        if self.totals is not None:
            return dict(self.totals)
        tally = dict.fromkeys(SeatStatus, 0)
        for entry in self.seats:
            tally[entry.status] += 1
        return tally


class PaymentEventKind(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    OTHER = "other"  # any event type we do not act on


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """A verified provider event, reduced to what settlement needs."""

    id: str
    type: str
    kind: PaymentEventKind
    intent_id: str | None
    amount: int | None = None  # minor units the intent says were paid; None if absent
    currency: str | None = None  # ISO 4217 code, upper case (compared without case)
    refund: RefundEvent | None = None  # charge.refunded, refund.updated: for the refunds


class SettlementOutcome(StrEnum):
    CONFIRMED = "confirmed"
    CONFIRMED_LATE = "confirmed_late"  # paid after it ended, its seats were still free
    CANCELLED = "cancelled"
    REFUND_NEEDED = "refund_needed"  # paid after it ended, its seats were gone
    AMOUNT_MISMATCH = "amount_mismatch"  # paid another amount or currency: refunded, unchanged
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # a state only moves forward: nothing to do
    UNKNOWN_INTENT = "unknown_intent"
    REFUND_UPDATED = "refund_updated"  # a refund event, applied to the booking's refunds


@dataclass(frozen=True, slots=True)
class Settlement:
    outcome: SettlementOutcome
    booking: Booking | None
