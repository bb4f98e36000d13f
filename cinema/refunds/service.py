"""Refunds: record (seats freed at once), then ask the provider, then tell the customer.

The order is the point. The refund is written and the seats given back in one PostgreSQL
transaction (docs/concurrency.md C.8) with no provider call inside it; the provider call
follows, under a lease on the refund row, with an idempotency key derived from the booking
and its seats. If the provider is down the refund stays `pending` and the worker's sweep
(`retry_due`) sends it again later; a retry first asks the provider whether an earlier
attempt already made it (a crash between the call and its record). The provider's webhook
then moves it to `refunded` or `failed`, and the booking's `payment.status` follows."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from cinema.booking.errors import BookingNotFound, PaymentProviderUnavailable
from cinema.booking.model import Booking, BookingStatus, SettlementOutcome
from cinema.booking.ports import BookingStore, ScreeningCatalogue
from cinema.refunds import rules
from cinema.refunds.errors import CancelWindowClosed, RefundRefused, SeatsNotInBooking
from cinema.refunds.model import Refund, RefundEvent, RefundRequest, RefundSource
from cinema.refunds.ports import RefundGateway, RefundStore

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]
Spawn = Callable[[str, Job], None]

_REFUSALS = {
    "not_found": None,
    "booking_pending": "a PENDING booking is not paid: cancel it instead",
    "booking_not_refundable": "only a CONFIRMED (paid) booking can be refunded",
    "already_refunded": "this booking is already fully refunded",
    "seats_already_refunded": "some of these seats are already refunded",
}
# Pauses between provider attempts made by the worker's sweep, seconds (then it keeps the last).
RETRY_DELAYS = (5.0, 15.0, 60.0, 300.0, 900.0)


class SoldSeats(Protocol):
    async def release_sold(self, screening_id: int, seat_ids: tuple[int, ...]) -> None:
        """Free the seats' sold markers in the filter (PostgreSQL freed them already)."""
        ...


class RefundService:
    def __init__(
        self,
        *,
        store: RefundStore,
        bookings: BookingStore,
        catalogue: ScreeningCatalogue,
        holds: SoldSeats,
        gateway: RefundGateway | None,
        spawn: Spawn,
        notify: Callable[[int], Awaitable[object]],
        cancel_pending: Callable[[int, int], Awaitable[Booking]],
        customer_cancel_hours: int,
        lease_seconds: float = 60.0,
    ) -> None:
        self._store = store
        self._bookings = bookings
        self._catalogue = catalogue
        self._holds = holds
        self._gateway = gateway
        self._spawn = spawn
        self._notify = notify
        self._cancel_pending = cancel_pending
        self._cancel_hours = customer_cancel_hours
        self._lease = lease_seconds

    async def refund(self, request: RefundRequest) -> Booking:
        """Refund the tickets asked for (all that are live when `seat_ids` is None)."""
        booking = await self._bookings.booking(request.booking_id)
        if booking is None:
            raise BookingNotFound(request.booking_id)
        if booking.status is BookingStatus.PENDING:
            raise RefundRefused("booking_pending", _REFUSALS["booking_pending"] or "")
        shares = rules.ticket_shares(booking.amount, booking.currency, booking.tickets)
        if request.seat_ids is not None:
            unknown = sorted(set(request.seat_ids) - set(shares))
            if unknown:
                raise SeatsNotInBooking(unknown)
        recorded = await self._store.record(request, shares, whole=request.seat_ids is None)
        if recorded.refused is not None:
            raise _refusal(recorded.refused, request.booking_id, list(recorded.seat_ids))
        assert recorded.refund_id is not None
        log.info(
            "refund %s of booking %s recorded (%s, seats %s)",
            recorded.refund_id,
            booking.id,
            request.source.value,
            list(recorded.seat_ids),
        )
        await self._free_in_filter(booking.screening_id, recorded.seat_ids)
        await self._submit_and_notify(recorded.refund_id)
        refunded = await self._bookings.booking(booking.id)
        assert refunded is not None
        return refunded

    async def refunds_of(self, booking_id: int) -> list[Refund]:
        """Newest first."""
        return await self._store.refunds_of(booking_id)

    async def cancel_by_customer(self, user_id: int, booking_id: int) -> Booking:
        """The owner cancels: a PENDING booking as before; a CONFIRMED one is refunded in full
        up to CUSTOMER_CANCEL_HOURS before the start, later 409 cancel_window_closed."""
        booking = await self._bookings.booking(booking_id)
        if booking is None or booking.user_id != user_id:
            raise BookingNotFound(booking_id)
        if booking.status is not BookingStatus.CONFIRMED:
            return await self._cancel_pending(user_id, booking_id)
        snapshot = await self._catalogue.snapshot(booking.screening_id)
        if snapshot is None:
            raise BookingNotFound(booking_id)
        if not rules.customer_may_cancel(
            snapshot.screening.starts_at, datetime.now(UTC), self._cancel_hours
        ):
            raise CancelWindowClosed(self._cancel_hours)
        return await self.refund(
            RefundRequest(booking_id, "cancelled by the customer", RefundSource.CUSTOMER, user_id)
        )

    async def _free_in_filter(self, screening_id: int, seat_ids: tuple[int, ...]) -> None:
        """PostgreSQL freed the seats; their sold markers would still turn buyers away."""
        try:
            await asyncio.shield(self._holds.release_sold(screening_id, seat_ids))
        except Exception:
            log.exception("could not free refunded seats in redis; PostgreSQL still decides")

    async def _submit_and_notify(self, refund_id: int) -> None:
        try:
            await self.submit(refund_id)
        except Exception as exc:  # recorded as pending: the worker's sweep sends it later
            log.warning("refund %s not sent to the provider yet: %r", refund_id, exc)
        self._spawn(f"refund-email-{refund_id}", functools.partial(self._notify, refund_id))

    async def submit(self, refund_id: int) -> bool:
        """One provider attempt under the lease; True if this call got the provider's id."""
        claim = await self._store.claim_submit(refund_id, self._lease)
        if claim is None or self._gateway is None:
            return False
        refund = claim.refund
        try:
            provider_id = None
            if claim.attempts > 1:  # an earlier attempt may have made it and died unrecorded
                provider_id = await self._gateway.find_refund(claim.intent_id, refund.id)
            if provider_id is None:
                provider_id = await self._gateway.create_refund(
                    claim.intent_id,
                    refund.amount,
                    refund.currency,
                    refund.idempotency_key,
                    {
                        "cinemacore_refund_id": str(refund.id),
                        "booking_id": str(refund.booking_id),
                        "reference": claim.reference,
                    },
                )
        except PaymentProviderUnavailable as exc:
            delay = RETRY_DELAYS[min(claim.attempts, len(RETRY_DELAYS)) - 1]
            await self._store.submit_failed(refund.id, str(exc), delay if exc.retryable else None)
            raise
        except BaseException as exc:
            await asyncio.shield(self._store.submit_failed(refund.id, repr(exc), RETRY_DELAYS[0]))
            raise
        await self._store.submitted(refund.id, provider_id)
        log.info("refund %s is %s at the provider", refund.id, provider_id)
        return True

    async def retry_due(self, limit: int = 50) -> int:
        """The worker's sweep: send the refunds the provider has not taken yet (it was down,
        or the process that recorded them died). Stops when the provider is down."""
        sent = 0
        for refund_id in await self._store.due_submissions(limit):
            try:
                if await self.submit(refund_id):
                    sent += 1
                    self._spawn(
                        f"refund-email-{refund_id}", functools.partial(self._notify, refund_id)
                    )
            except PaymentProviderUnavailable as exc:
                if exc.retryable:
                    log.warning("payment provider unavailable; refund sweep stopped: %s", exc)
                    break
        if sent:
            log.info("refund sweep sent %d refund(s) to the provider", sent)
        return sent

    async def release_refunded_seats(self, within_seconds: float = 900.0) -> int:
        """The worker's backstop for R.3: clear the sold markers of seats refunded lately
        that nobody holds now (the refunding process may have died before it did)."""
        freed = await self._store.recently_freed(within_seconds)
        for screening_id, seat_ids in freed:
            await self._holds.release_sold(screening_id, seat_ids)
        return len(freed)

    async def apply_event(self, event: RefundEvent) -> SettlementOutcome:
        """A provider event about refunds: refund_updated, duplicate (delivered before), or
        ignored (it names no booking of ours, e.g. the refund of a late payment)."""
        if event.intent_id is None:
            return SettlementOutcome.IGNORED
        changed = await self._store.apply_event(event)
        if changed is None:
            return SettlementOutcome.DUPLICATE
        if not changed:
            return SettlementOutcome.IGNORED
        log.info("refund event %s (%s) updated booking(s) %s", event.id, event.type, changed)
        return SettlementOutcome.REFUND_UPDATED


def _refusal(refused: str, booking_id: int, seat_ids: list[int]) -> Exception:
    if refused == "not_found":
        return BookingNotFound(booking_id)
    if refused == "seats_not_in_booking":
        return SeatsNotInBooking(seat_ids)
    message = _REFUSALS.get(refused) or "this booking cannot be refunded"
    return RefundRefused(refused, message, seat_ids or None)
