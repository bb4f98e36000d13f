"""What the refund services need from the outside world; the composition root supplies it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cinema.refunds.model import Refund, RefundEvent, RefundRequest, SubmitClaim


@dataclass(frozen=True, slots=True)
class Recorded:
    """cinema_refund_tickets' answer: the refund written, or why not (nothing written)."""

    refund_id: int | None
    refused: str | None
    seat_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LiveBooking:
    booking_id: int
    status: str  # PENDING or CONFIRMED


@dataclass(frozen=True, slots=True)
class RefundNotice:
    """What the refund email says."""

    refund_id: int
    booking_id: int
    reference: str
    email: str
    movie_title: str
    starts_at: datetime
    amount: int
    currency: str
    reason: str
    booking_amount: int
    refunded_total: int


@dataclass(frozen=True, slots=True)
class CancellationNotice:
    """What the email to a customer of a cancelled screening says (one per booking)."""

    booking_id: int
    reference: str
    email: str
    movie_title: str
    starts_at: datetime
    reason: str
    currency: str
    refunded: int  # the cancellation's refunds the provider has (or needed none)
    refund_failed: int  # the cancellation's refunds the provider could not make
    late_payment_refunded: bool  # unpaid when cancelled, but a payment came and is refunded
    refund_ids: tuple[int, ...]  # the refunds this email tells of (their own email is skipped)


class CancellationNoticeStore(Protocol):
    """The screening-cancellation emails' at-most-once bookkeeping (db/015)."""

    async def claim(self, booking_id: int, lease_seconds: float) -> CancellationNotice | None:
        """Lease the notice of a booking the cancellation has ended and, if it was paid,
        whose refund the provider has; None: not due, sent, or leased by another sender."""
        ...

    async def mark_sent(self, notice: CancellationNotice) -> None: ...

    async def release(self, booking_id: int) -> None: ...

    async def due(self, screening_id: int | None, limit: int) -> list[int]:
        """Bookings whose notice is due (of one screening, or of any cancelled lately)."""
        ...


class RefundStore(Protocol):
    async def record(
        self, request: RefundRequest, shares: Mapping[int, int], whole: bool
    ) -> Recorded:
        """The one refund transaction (docs/concurrency.md C.8)."""
        ...

    async def refund(self, refund_id: int) -> Refund | None: ...

    async def refunds_of(self, booking_id: int) -> list[Refund]: ...

    async def claim_submit(self, refund_id: int, lease_seconds: float) -> SubmitClaim | None:
        """Lease a pending refund not yet at the provider (None: done, or leased)."""
        ...

    async def submitted(self, refund_id: int, provider_refund_id: str) -> None: ...

    async def submit_failed(
        self, refund_id: int, error: str, retry_in_seconds: float | None
    ) -> None:
        """Give up the lease; retry after `retry_in_seconds`, or None: failed for good."""
        ...

    async def due_submissions(self, limit: int) -> list[int]: ...

    async def recently_freed(self, within_seconds: float) -> list[tuple[int, tuple[int, ...]]]:
        """(screening, seats) refunded in the last `within_seconds` that nobody holds now."""
        ...

    async def apply_event(self, event: RefundEvent) -> list[int] | None:
        """Record the event id and move the refunds it names, in one transaction; the
        bookings changed, or None for a duplicate delivery."""
        ...

    async def claim_notice(self, refund_id: int, lease_seconds: float) -> RefundNotice | None: ...

    async def mark_notified(self, refund_id: int) -> None: ...

    async def release_notice(self, refund_id: int) -> None: ...

    async def unnotified(self, limit: int, min_age_seconds: float) -> list[int]: ...


class ScreeningStore(Protocol):
    async def cancel_screening(self, screening_id: int, reason: str) -> datetime | None:
        """Mark it cancelled (once); when it was, or None if there is no such screening."""
        ...

    async def cancel_reason(self, screening_id: int) -> str | None: ...

    async def live_bookings(self, screening_id: int, limit: int) -> list[LiveBooking]: ...

    async def cancelled_with_live_bookings(self, limit: int) -> list[int]: ...


class RefundGateway(Protocol):
    """The payment provider's refunds. Every call may raise PaymentProviderUnavailable."""

    async def create_refund(
        self, intent_id: str, amount: int, currency: str, key: str, metadata: dict[str, str]
    ) -> str:
        """Refund `amount` of the intent's payment, idempotent per `key`; the refund id."""
        ...

    async def find_refund(self, intent_id: str, refund_id: int) -> str | None:
        """The provider's id of our refund `refund_id` if it already made it (a retry after
        a crash between the call and its record), else None."""
        ...
