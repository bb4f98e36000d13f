"""Refund types. Amounts are integer ISO 4217 minor units."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RefundStatus(StrEnum):
    PENDING = "pending"  # recorded, seats freed; the provider has not confirmed it yet
    REFUNDED = "refunded"
    FAILED = "failed"


class RefundSource(StrEnum):
    STAFF = "staff"
    CUSTOMER = "customer"
    SCREENING = "screening"  # the whole screening was cancelled


# A booking fully refunded ends CANCELLED with this reason.
REFUNDED_REASON = "refunded"
SCREENING_CANCELLED_REASON = "screening_cancelled"


@dataclass(frozen=True, slots=True)
class RefundItem:
    seat_id: int
    amount: int


@dataclass(frozen=True, slots=True)
class Refund:
    id: int
    booking_id: int
    amount: int
    currency: str
    reason: str
    source: RefundSource
    status: RefundStatus
    idempotency_key: str
    provider_refund_id: str | None
    requested_by: int | None
    created_at: datetime
    items: tuple[RefundItem, ...] = ()
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Refund `seat_ids` (None: every ticket still live) of one booking."""

    booking_id: int
    reason: str
    source: RefundSource
    requested_by: int | None
    seat_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    """What a provider event says about one refund: its id, ours (from its metadata, if it
    carries it), and its state (None: an event that does not say)."""

    provider_refund_id: str | None
    refund_id: int | None
    status: RefundStatus | None
    amount: int | None = None  # ISO minor units


@dataclass(frozen=True, slots=True)
class RefundEvent:
    """A verified provider event about refunds (charge.refunded, refund.updated)."""

    id: str
    type: str
    intent_id: str | None
    refunds: tuple[ProviderRefund, ...]
    amount_refunded: int | None = None  # charge.refunded: the charge's total refunded


@dataclass(frozen=True, slots=True)
class SubmitClaim:
    """A refund this caller may send to the provider now (it holds the lease)."""

    refund: Refund
    intent_id: str
    reference: str
    attempts: int
