"""Settling payments: provider events move bookings forward; ended bookings' intents are
cancelled. Only a verified provider event ever confirms a booking."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cinema.booking.errors import PaymentProviderUnavailable, PaymentsNotConfigured
from cinema.booking.model import (
    Booking,
    BookingStatus,
    PaymentEvent,
    PaymentEventKind,
    PaymentStatus,
    Settlement,
    SettlementOutcome,
)
from cinema.booking.ports import (
    BookingEvents,
    BookingStore,
    FollowUps,
    NoBookingEvents,
    PaymentGateway,
    SeatHolds,
    SettlementStore,
)
from cinema.refunds.model import RefundEvent

log = logging.getLogger(__name__)


class PaymentSettlement:
    def __init__(
        self,
        *,
        gateway: PaymentGateway | None,
        store: SettlementStore,
        holds: SeatHolds,
        follow_ups: FollowUps,
        events: BookingEvents | None = None,
        refunds: Callable[[RefundEvent], Awaitable[SettlementOutcome]] | None = None,
    ) -> None:
        self._refunds = refunds  # applies refund events (cinema/refunds/service.py)
        self._gateway = gateway
        self._store = store
        self._holds = holds
        self._follow_ups = follow_ups
        self._events: BookingEvents = events or NoBookingEvents()

    async def handle_webhook(self, payload: bytes, signature: str | None) -> SettlementOutcome:
        """Verify and apply one delivery. Raises InvalidWebhook (nothing changed) or
        PaymentProviderUnavailable (a refund is owed but the provider did not take it: the
        provider delivers again, and the duplicate retries the refund)."""
        if self._gateway is None:
            raise PaymentsNotConfigured()
        event = self._gateway.parse_event(payload, signature)
        if event.refund is not None:
            if self._refunds is None:
                return SettlementOutcome.IGNORED
            return await self._refunds(event.refund)
        if event.kind is PaymentEventKind.OTHER or event.intent_id is None:
            log.info("ignoring payment event %s of type %s", event.id, event.type)
            return SettlementOutcome.IGNORED
        settlement = await self._store.settle(event)
        if settlement.outcome is SettlementOutcome.UNKNOWN_INTENT:
            log.info("payment event %s names intent %s of no booking", event.id, event.intent_id)
        await self._after(settlement, event)
        return settlement.outcome

    async def _after(self, settlement: Settlement, event: PaymentEvent) -> None:
        booking = settlement.booking
        if booking is None:
            return
        outcome, kind = settlement.outcome, event.kind
        if outcome in (SettlementOutcome.CONFIRMED, SettlementOutcome.CONFIRMED_LATE):
            self._events.confirmed(booking)
            await self._quietly(self._holds.mark_sold(booking.screening_id, booking.seat_ids))
            await self._follow_ups.send_ticket(booking.id)
        elif outcome is SettlementOutcome.CANCELLED:
            self._events.cancelled(booking, booking.cancel_reason)
            await self._quietly(
                self._holds.release(
                    booking.screening_id, booking.seat_ids, booking.hold_token, booking.expires_at
                )
            )
            if kind is PaymentEventKind.FAILED:
                # The customer could still pay this intent with another card: close it.
                await self._follow_ups.cancel_payment(booking.id)
        elif outcome is SettlementOutcome.AMOUNT_MISMATCH:
            self._events.payment_mismatched(booking, event)
            log.warning(
                "payment event %s paid %s %s for booking %s, which costs %s %s: refunding,"
                " the booking is left as it was",
                event.id,
                event.amount,
                event.currency,
                booking.id,
                booking.amount,
                booking.currency,
            )
            await self._refund(booking)
        elif outcome is SettlementOutcome.REFUND_NEEDED or (
            outcome is SettlementOutcome.DUPLICATE
            and booking.payment is not None
            and booking.payment.status is PaymentStatus.REFUND_PENDING
            and booking.refunded == 0  # refund_pending of a staff refund: not a late payment
        ):
            log.warning("booking %s was paid after its seats were taken: refunding", booking.id)
            await self._refund(booking)

    async def _refund(self, booking: Booking) -> None:
        assert self._gateway is not None
        refund_id = await self._gateway.refund(booking)
        await self._store.record_refund(booking.id, refund_id)

    @staticmethod
    async def _quietly(call: Awaitable[None]) -> None:
        """Redis is only the filter: PostgreSQL already holds the truth."""
        try:
            await asyncio.shield(call)
        except Exception:
            log.exception("could not update seat keys in redis; PostgreSQL still decides")


class PaymentCanceller:
    """Cancels the intent of a booking that ended unpaid, so it can no longer be paid."""

    def __init__(self, *, gateway: PaymentGateway | None, store: BookingStore) -> None:
        self._gateway = gateway
        self._store = store

    async def cancel(self, booking_id: int) -> bool:
        """One attempt; raises PaymentProviderUnavailable when worth retrying."""
        booking = await self._store.booking(booking_id)
        if (
            self._gateway is None
            or booking is None
            or booking.status is not BookingStatus.CANCELLED
            or booking.payment is None
            or booking.payment.status not in (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.FAILED)
        ):
            return False
        cancelled = await self._gateway.cancel_intent(booking.payment.intent_id)
        # Not cancellable means already canceled or paid: either way nothing is left to close
        # (a payment that did go through arrives as a webhook and settles the booking).
        await self._store.set_payment_status(
            booking.id, PaymentStatus.CANCELED, booking.payment.status
        )
        return cancelled

    async def sweep(self, limit: int = 100) -> int:
        """Close the intents of bookings that ended without passing through a cancel hook
        (e.g. a lapsed hold ended by the next buyer of its seats). Run it periodically; it is
        idempotent. Returns how many intents it cancelled; stops early if the provider is down."""
        cancelled = 0
        for booking_id in await self._store.ended_with_open_intent(limit):
            try:
                cancelled += await self.cancel(booking_id)
            except PaymentProviderUnavailable as exc:
                if exc.retryable:
                    log.warning("payment provider unavailable; sweep stopped: %s", exc)
                    break
                log.warning("could not cancel the intent of booking %s: %s", booking_id, exc)
        return cancelled
