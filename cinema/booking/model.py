"""Booking types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class BookingStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


class SeatStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    LOCKED = "LOCKED"
    SOLD = "SOLD"


class CancelReason(StrEnum):
    EXPIRED = "expired"
    USER = "cancelled_by_user"
    PAYMENT_FAILED = "payment_failed"
    ABANDONED = "abandoned"  # the request failed after the hold was taken


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


@dataclass(frozen=True, slots=True)
class LiveReservation:
    """A non-cancelled reservation as the seat map sees it."""

    seat_id: int
    status: BookingStatus
    deadline_passed: bool


@dataclass(frozen=True, slots=True)
class SeatMapEntry:
    seat_id: int
    row: str
    number: int
    category: str
    status: SeatStatus


@dataclass(frozen=True, slots=True)
class SeatMap:
    screening_id: int
    seats: tuple[SeatMapEntry, ...]

    def count(self, status: SeatStatus) -> int:
        return sum(1 for s in self.seats if s.status is status)
