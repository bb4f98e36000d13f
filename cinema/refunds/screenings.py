"""Cancelling a whole screening: mark it cancelled (no new booking gets in: a trigger,
docs/concurrency.md R.5), then end every booking it has, in the worker.

The pass is resumable because its state is PostgreSQL's: it repeatedly reads the
screening's bookings that are still PENDING or CONFIRMED and ends each one in its own
transaction (a PENDING one is cancelled, a CONFIRMED one refunded in full through the one
refund transaction, which refunds a booking at most once). A worker killed half-way leaves
the rest live; the task run again, or the worker's sweep over cancelled screenings, picks up
exactly those. A refund recorded but not yet sent to the provider is sent by the refund sweep.

Each booking it ends is owed one email (the cancellation notice, cinema/tickets/cancel_mail.py):
sent right after the booking is ended, then once more for the whole screening at the end of
the pass (what an earlier, killed pass ended); the worker's notice sweep sends the rest (SMTP
was down, or a refund reached the provider only later)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from cinema.booking.errors import BookingNotFound, ScreeningNotFound
from cinema.refunds.errors import RefundRefused
from cinema.refunds.model import SCREENING_CANCELLED_REASON, RefundRequest, RefundSource
from cinema.refunds.ports import ScreeningStore
from cinema.refunds.service import RefundService

log = logging.getLogger(__name__)

BATCH = 50


class Notices(Protocol):
    async def send(self, booking_id: int) -> bool:
        """The booking's cancellation email, if it is due and nobody sent it; raises on an
        SMTP failure."""
        ...

    async def send_due(self, screening_id: int | None, limit: int = ...) -> int: ...


class ScreeningCancellation:
    def __init__(
        self,
        *,
        store: ScreeningStore,
        refunds: RefundService,
        end_pending: Callable[[int, str], Awaitable[object]],
        kick: Callable[[int], Awaitable[None]],
        notices: Notices,
    ) -> None:
        self._store = store
        self._refunds = refunds
        self._end_pending = end_pending
        self._kick = kick
        self._notices = notices

    async def cancel(self, screening_id: int, reason: str) -> datetime:
        """Mark the screening cancelled (idempotent) and have the worker end its bookings."""
        cancelled_at = await self._store.cancel_screening(screening_id, reason)
        if cancelled_at is None:
            raise ScreeningNotFound(screening_id)
        try:
            await self._kick(screening_id)
        except Exception as exc:  # the worker's sweep over cancelled screenings does it
            log.warning("could not queue the cancellation of screening %s: %r", screening_id, exc)
        return cancelled_at

    async def run(self, screening_id: int, reason: str | None = None) -> int:
        """End every live booking of the cancelled screening; how many this call ended."""
        ended = 0
        why = reason or await self._store.cancel_reason(screening_id) or "screening cancelled"
        mail = True  # until SMTP fails once: then the notice sweep, not every booking, retries
        while True:
            batch = await self._store.live_bookings(screening_id, BATCH)
            progress = 0
            for live in batch:
                done = await self._end(live.booking_id, live.status, why)
                progress += done
                if done and mail:
                    mail = await self._notify(live.booking_id)
            ended += progress
            if len(batch) < BATCH or progress == 0:
                break
        if ended:
            log.info("screening %s cancelled: ended %d booking(s)", screening_id, ended)
        if mail:
            await self._notify_rest(screening_id)
        return ended

    async def _notify(self, booking_id: int) -> bool:
        """False if SMTP failed (the notice stays due for the sweep)."""
        try:
            await self._notices.send(booking_id)
        except Exception as exc:
            log.warning("cancellation email for booking %s not sent yet: %r", booking_id, exc)
            return False
        return True

    async def _notify_rest(self, screening_id: int | None) -> None:
        try:
            await self._notices.send_due(screening_id)
        except Exception as exc:  # PostgreSQL: the notice sweep tries again
            log.warning("cancellation emails of screening %s: %r", screening_id, exc)

    async def _end(self, booking_id: int, status: str, reason: str) -> int:
        try:
            if status == "PENDING":
                await self._end_pending(booking_id, SCREENING_CANCELLED_REASON)
            else:
                await self._refunds.refund(
                    RefundRequest(booking_id, reason, RefundSource.SCREENING, None)
                )
        except (RefundRefused, BookingNotFound) as exc:
            # It changed under us (paid, refunded or cancelled a moment ago): the next read
            # of the screening's live bookings sees what it is now.
            log.info("booking %s of a cancelled screening: %s", booking_id, exc)
            return 0
        return 1

    async def sweep(self, limit: int = 20) -> int:
        """The worker's backstop: finish every cancelled screening that still has bookings,
        then send the cancellation emails still due (of any screening cancelled lately)."""
        ended = 0
        for screening_id in await self._store.cancelled_with_live_bookings(limit):
            ended += await self.run(screening_id)
        await self._notify_rest(None)
        return ended
