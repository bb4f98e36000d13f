"""The booking service: claim in the fast filter, commit in the authority, release on failure."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cinema.booking import rules
from cinema.booking.errors import (
    BookingNotCancellable,
    BookingNotFound,
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
    PaymentProviderUnavailable,
    ReferenceTaken,
    ScreeningNotFound,
    SeatsUnavailable,
)
from cinema.booking.identifiers import hold_token, new_reference
from cinema.booking.model import (
    Booking,
    BookingStatus,
    CancelReason,
    NewBooking,
    SeatMap,
)
from cinema.booking.ports import (
    BookingEvents,
    BookingStore,
    ExpiryScheduler,
    FollowUps,
    NoBookingEvents,
    NoFollowUps,
    PaymentGateway,
    ScreeningCatalogue,
    SeatHolds,
)
from cinema.booking.seatmap import SeatMapBuilder
from cinema.catalogue.model import ScreeningSnapshot

log = logging.getLogger(__name__)

_REFERENCE_ATTEMPTS = 5
# Pauses before each try to cancel a booking whose payment could not be set up (seconds).
_ABANDON_RETRY_DELAYS = (0.0, 0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class BookingResult:
    booking: Booking
    replayed: bool  # True when an Idempotency-Key returned an earlier booking


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BookingService:
    def __init__(
        self,
        *,
        holds: SeatHolds,
        store: BookingStore,
        catalogue: ScreeningCatalogue,
        expiry: ExpiryScheduler,
        hold_ttl_seconds: int,
        filter_enabled: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        events: BookingEvents | None = None,
        payments: PaymentGateway | None = None,
        follow_ups: FollowUps | None = None,
    ) -> None:
        self._holds = holds
        self._store = store
        self._catalogue = catalogue
        self._expiry = expiry
        self._hold_ttl = hold_ttl_seconds
        self._filter_enabled = filter_enabled
        self._clock = clock
        self.events: BookingEvents = events or NoBookingEvents()
        self._payments = payments  # None: bookings carry no payment (no provider configured)
        self._follow_ups = follow_ups or NoFollowUps()
        self._seat_maps = SeatMapBuilder()
        # conflicts_redis / conflicts_postgres / created / cancelled / redis_fallbacks ...
        self.stats: Counter[str] = Counter()

    async def _snapshot(self, screening_id: int) -> ScreeningSnapshot:
        snapshot = await self._catalogue.snapshot(screening_id)
        if snapshot is None:
            raise ScreeningNotFound(screening_id)
        return snapshot

    async def book(
        self,
        user_id: int,
        screening_id: int,
        seat_ids: list[int],
        idempotency_key: str | None = None,
    ) -> BookingResult:
        seats = rules.normalize_selection(seat_ids)
        snapshot = await self._snapshot(screening_id)
        rules.ensure_bookable(snapshot, seats, self._clock())
        token = hold_token(user_id, idempotency_key)

        claimed = False
        if self._filter_enabled:
            claim = await self._holds.claim(screening_id, seats, token, self._hold_ttl)
            if not claim.reachable:
                self.stats["redis_fallbacks"] += 1
                self.events.redis_fallback()
                log.warning("seat filter unreachable; booking through PostgreSQL alone")
            elif not claim.claimed:
                if idempotency_key is not None:
                    replay = await self._replay(user_id, idempotency_key, screening_id, seats)
                    if replay is not None:
                        return replay
                self.stats["conflicts_redis"] += 1
                self.events.conflicted("redis", claim.taken)
                raise SeatsUnavailable(list(claim.taken))
            else:
                claimed = True

        try:
            booking = await self._commit(user_id, snapshot, seats, token, idempotency_key)
        except (SeatsUnavailable, IdempotencyKeyTaken) as exc:
            replay = None
            try:
                if idempotency_key is not None:
                    replay = await self._replay(user_id, idempotency_key, screening_id, seats)
            finally:
                # A live replay owns these keys (same token); anything else must let them go.
                if replay is None or replay.booking.status is BookingStatus.CANCELLED:
                    await self._release_quietly(claimed, screening_id, seats, token)
            if replay is not None:
                return replay
            self.stats["conflicts_postgres"] += 1
            self.events.conflicted("postgres", seats)
            if isinstance(exc, SeatsUnavailable):
                raise
            raise SeatsUnavailable(list(seats)) from exc
        except BaseException:
            await self._release_quietly(claimed, screening_id, seats, token)
            raise

        self.stats["created"] += 1
        self.events.created(booking)
        booking = await self._start_payment(booking, owner=True)
        try:
            await self._expiry.schedule(booking)
        except Exception as exc:
            # The booking stands: its deadline lives in PostgreSQL, and the worker's
            # reconciler ends it even without a scheduled task.
            self.stats["expiry_schedule_failures"] += 1
            log.warning("could not schedule expiry of booking %s: %r", booking.id, exc)
        return BookingResult(booking, replayed=False)

    async def _start_payment(self, booking: Booking, owner: bool) -> Booking:
        """Create the booking's payment intent, after its transaction has committed (nothing is
        locked while the provider answers). If the provider fails the request that created the
        booking, the booking is cancelled and its seats freed: nothing is left half-made.
        If the intent cannot be stored, a booking with an Idempotency-Key stays for the retry
        that key promises (it stores the same intent); one without is cancelled."""
        if (
            self._payments is None
            or booking.payment is not None
            or booking.status is not BookingStatus.PENDING
        ):
            return booking
        try:
            intent = await self._payments.create_intent(booking)
        except Exception as exc:
            if isinstance(exc, PaymentProviderUnavailable):
                self.stats["payment_unavailable"] += 1
            if owner:  # a replay leaves the booking to the request that made it
                await self._abandon(booking)
            raise
        try:
            stored = await self._store.attach_payment(
                booking.id, self._payments.provider, intent.id, intent.client_secret
            )
        except Exception:
            self.stats["payment_store_failures"] += 1
            if owner and booking.idempotency_key is None:
                # Nobody can come back for this booking: end it, and its unseen intent.
                await self._abandon(booking, intent_id=intent.id)
            raise
        if stored.payment is not None and stored.payment.intent_id != intent.id:
            log.warning("booking %s got a 2nd intent %s; keeping the 1st", stored.id, intent.id)
        if stored.status is BookingStatus.CANCELLED:
            await self.cancel_payment_later(stored)  # cancelled while the provider answered
        return stored

    async def _abandon(self, booking: Booking, intent_id: str | None = None) -> None:
        """Cancel a booking whose client is told it failed, and free its seats. The store may
        be failing this very moment (a lost connection is replaced within a second or so), so
        the cancel is retried briefly; should all tries fail, the booking's deadline ends it."""
        try:
            for delay in _ABANDON_RETRY_DELAYS:
                await asyncio.sleep(delay)
                try:
                    await self._store.end_booking(
                        booking.id,
                        BookingStatus.CANCELLED,
                        CancelReason.PAYMENT_UNAVAILABLE.value,
                    )
                    break
                except Exception as exc:
                    log.warning("could not cancel abandoned booking %s: %r", booking.id, exc)
            else:
                self.stats["abandon_failures"] += 1
        finally:
            await self._release_quietly(
                True, booking.screening_id, booking.seat_ids, booking.hold_token
            )
        if intent_id is not None and self._payments is not None:
            try:  # its client secret was never shown to anyone; nobody can pay it
                await self._payments.cancel_intent(intent_id)
            except Exception as exc:
                log.warning(
                    "could not cancel intent %s of booking %s: %r", intent_id, booking.id, exc
                )

    async def cancel_payment_later(self, booking: Booking) -> None:
        """A PENDING booking ended unpaid (cancelled, expired, failed): cancel its intent at the
        provider in the background, retried; the seats are already free and never wait for it."""
        if booking.payment is not None:
            try:
                await self._follow_ups.cancel_payment(booking.id)
            except Exception:
                log.exception("could not schedule cancelling the payment of %s", booking.id)

    async def _commit(
        self,
        user_id: int,
        snapshot: ScreeningSnapshot,
        seats: tuple[int, ...],
        token: str,
        idempotency_key: str | None,
    ) -> Booking:
        screening = snapshot.screening
        for _ in range(_REFERENCE_ATTEMPTS):
            try:
                return await self._store.create_booking(
                    NewBooking(
                        reference=new_reference(),
                        user_id=user_id,
                        screening_id=screening.id,
                        hall_id=screening.hall_id,
                        seat_ids=seats,
                        amount=rules.price(snapshot, seats),
                        currency=screening.currency,
                        hold_ttl_seconds=self._hold_ttl,
                        hold_token=token,
                        idempotency_key=idempotency_key,
                    )
                )
            except ReferenceTaken:
                continue
        raise RuntimeError("could not find a free booking reference")

    async def _replay(
        self, user_id: int, key: str, screening_id: int, seats: tuple[int, ...]
    ) -> BookingResult | None:
        earlier = await self._store.booking_by_idempotency_key(user_id, key)
        if earlier is None:
            return None
        if earlier.screening_id != screening_id or earlier.seat_ids != seats:
            raise IdempotencyKeyReused()
        # A replay answers with the same payment; if the first request died before creating
        # it, the replay creates it (the provider's idempotency key keeps it to one intent).
        return BookingResult(await self._start_payment(earlier, owner=False), replayed=True)

    async def _release_quietly(
        self, claimed: bool, screening_id: int, seats: tuple[int, ...], token: str
    ) -> None:
        """Free our Redis claim; a failure here only leaves keys that expire on their own."""
        if not claimed:
            return
        try:
            await asyncio.shield(self._holds.release(screening_id, seats, token))
        except Exception:
            log.exception("could not release seat holds; they expire with their TTL")

    async def booking_for(self, user_id: int, booking_id: int) -> Booking:
        booking = await self._store.booking(booking_id)
        if booking is None or booking.user_id != user_id:
            raise BookingNotFound(booking_id)
        return booking

    async def bookings_of(self, user_id: int, limit: int = 100, offset: int = 0) -> list[Booking]:
        return await self._store.bookings_of_user(user_id, limit, offset)

    async def booking_by_reference(self, user_id: int, reference: str) -> Booking | None:
        """The user's own booking with this reference, or None (another user's is None too)."""
        return await self._store.booking_by_reference(user_id, reference.upper())

    async def cancel(self, user_id: int, booking_id: int) -> Booking:
        booking = await self.booking_for(user_id, booking_id)
        if booking.status is BookingStatus.CANCELLED:
            return booking  # cancelling twice is harmless
        if booking.status is not BookingStatus.PENDING:
            raise BookingNotCancellable(
                f"booking {booking_id} is {booking.status.value} and cannot be cancelled"
            )
        ended = await self._store.end_booking(
            booking_id, BookingStatus.CANCELLED, CancelReason.USER.value
        )
        if ended is None:
            # It changed under us (paid or expired a moment ago): report what it is now.
            return await self.cancel(user_id, booking_id)
        self.stats["cancelled"] += 1
        self.events.cancelled(ended, CancelReason.USER.value)
        await self._release_quietly(True, ended.screening_id, ended.seat_ids, ended.hold_token)
        await self.cancel_payment_later(ended)
        return ended

    async def expire(self, booking_id: int) -> Booking | None:
        """End the booking if it is still PENDING and past its deadline; None if there was
        nothing to do (paid, already cancelled, unknown, or not due yet). Idempotent: any
        number of workers may call it for the same booking."""
        ended = await self._store.expire_booking(booking_id)
        if ended is None:
            return None
        await self._after_expiry(ended)
        return ended

    async def expire_overdue(self, batch_size: int) -> list[Booking]:
        """End one batch of overdue PENDING bookings (the reconciler calls this until it
        returns fewer than `batch_size`)."""
        ended = await self._store.expire_overdue(batch_size)
        for booking in ended:
            await self._after_expiry(booking)
        return ended

    async def _after_expiry(self, ended: Booking) -> None:
        self.stats["expired"] += 1
        self.events.expired(ended)
        await self._release_quietly(True, ended.screening_id, ended.seat_ids, ended.hold_token)
        await self.cancel_payment_later(ended)

    async def seat_map(self, screening_id: int) -> SeatMap:
        snapshot = await self._snapshot(screening_id)
        return self._seat_maps.build(snapshot, await self._store.live_reservations(screening_id))
