"""The booking service: claim in the fast filter, commit in the authority, release on failure.
A claim is provisional (seconds) until the commit extends it to the hold's deadline; see
"Redis claims" in docs/concurrency.md."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cinema.booking import rules
from cinema.booking.errors import (
    BookingNotCancellable,
    BookingNotFound,
    CustomerLimitReached,
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
    ReferenceTaken,
    ScreeningNotFound,
    SeatsUnavailable,
    SoldOut,
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
    Admission,
    BookingEvents,
    BookingStore,
    ConflictSource,
    ExpiryScheduler,
    FollowUps,
    HeldSeats,
    HoldClaim,
    NoBookingEvents,
    NoFollowUps,
    PaymentGateway,
    ScreeningCatalogue,
    SeatHolds,
)
from cinema.booking.seatmap import SeatMapBuilder
from cinema.catalogue.model import ScreeningSnapshot
from cinema.pricing import rules as pricing
from cinema.pricing.errors import PromoCodeExhausted, PromoCodeInvalid, PromoUseRefused
from cinema.pricing.model import PromoCode, TicketLine, TicketRequest, Totals
from cinema.pricing.ports import NoPromoFilter, PromoFilter
from cinema.pricing.service import PromoService

log = logging.getLogger(__name__)

_REFERENCE_ATTEMPTS = 5
# Pauses before each try to cancel a booking whose payment could not be set up (seconds).
_ABANDON_RETRY_DELAYS = (0.0, 0.2, 0.5, 1.0, 2.0)
DEFAULT_CLAIM_WINDOW_SECONDS = 2.0  # CLAIM_PROVISIONAL_SECONDS' default
_SWEEP_BATCH = 500
# Past this many unfinished hold extensions per process (Redis slower than the winners
# come), a winner waits for its own again, as before extensions went to the background.
_MAX_EXTENDING = 1024


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One booking request on its way through the filter and the store."""

    user_id: int
    screening_id: int
    seats: tuple[int, ...]
    token: str
    idempotency_key: str | None
    lines: tuple[TicketLine, ...]  # parallel to seats
    totals: Totals
    promo: PromoCode | None = None
    quantity: int = 0  # general admission: places wanted (seats is then empty)


@dataclass(frozen=True, slots=True)
class BookingResult:
    booking: Booking
    replayed: bool  # True when an Idempotency-Key returned an earlier booking


def _same_request(earlier: Booking, attempt: _Attempt) -> bool:
    """Whether a replayed request asks for what the booking it replays holds."""
    if not attempt.quantity:
        return earlier.seat_ids == attempt.seats and rules.same_ticket_types(
            earlier.tickets, attempt.lines
        )
    if len(earlier.seat_ids) != attempt.quantity:
        return False
    # places are handed out in id order, not request order: compare the types as a multiset
    return not earlier.tickets or sorted(t.ticket_type for t in earlier.tickets) == sorted(
        line.ticket_type for line in attempt.lines
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _admit(admission: Admission | None) -> None:
    if admission is not None:
        await admission.admit()


class BookingService:
    def __init__(
        self,
        *,
        holds: SeatHolds,
        store: BookingStore,
        catalogue: ScreeningCatalogue,
        expiry: ExpiryScheduler,
        hold_ttl_seconds: int,
        claim_window_seconds: float = DEFAULT_CLAIM_WINDOW_SECONDS,
        filter_enabled: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        events: BookingEvents | None = None,
        payments: PaymentGateway | None = None,
        follow_ups: FollowUps | None = None,
        promos: PromoService | None = None,
        promo_filter: PromoFilter | None = None,
    ) -> None:
        self._holds = holds
        self._store = store
        self._catalogue = catalogue
        self._expiry = expiry
        self._hold_ttl = hold_ttl_seconds
        self._claim_window = min(claim_window_seconds, float(hold_ttl_seconds))
        self._filter_enabled = filter_enabled
        self._clock = clock
        self.events: BookingEvents = events or NoBookingEvents()
        self._payments = payments  # None: bookings carry no payment (no provider configured)
        self._follow_ups = follow_ups or NoFollowUps()
        self._seat_maps = SeatMapBuilder()
        self._promos = promos
        self._promo_filter: PromoFilter = promo_filter or NoPromoFilter()
        # Unfinished hold extensions by (screening, token): a release of the same keys waits
        # for its extension, so an extension never lands after the release it would undo.
        self._extending: dict[tuple[int, str], asyncio.Task[None]] = {}

    async def _snapshot(self, screening_id: int) -> ScreeningSnapshot:
        snapshot = await self._catalogue.snapshot(screening_id)
        if snapshot is None:
            raise ScreeningNotFound(screening_id)
        return snapshot

    async def book(
        self,
        user_id: int,
        screening_id: int,
        tickets: Sequence[int | TicketRequest],
        idempotency_key: str | None = None,
        promo_code: str | None = None,
        admission: Admission | None = None,
    ) -> BookingResult:
        """Book `tickets`: seat ids (the default ticket type) or TicketRequests, with an
        optional promo code (any case). Requests without a seat are places of a
        general-admission screening. `admission` (the caller's rate limit) is decided
        before anything is claimed for good or committed: with the seat claim when the
        filter can, otherwise on its own; what it raises refuses the request."""
        requests = [t if isinstance(t, TicketRequest) else TicketRequest(t) for t in tickets]
        if requests and all(r.seat_id is None for r in requests):
            await _admit(admission)
            return await self._book_places(
                user_id, screening_id, requests, idempotency_key, promo_code
            )
        seats = rules.normalize_selection(rules.seat_ids_of(requests))
        snapshot = await self._snapshot(screening_id)
        now = self._clock()
        rules.ensure_form(snapshot, general_admission=False)
        rules.ensure_bookable(snapshot, seats, now)
        lines = rules.priced_lines(snapshot, requests)
        promo = await self._promo_for(promo_code, screening_id, lines, now)
        screening = snapshot.screening
        totals = pricing.totals(lines, screening.fees, screening.currency, promo)
        token = hold_token(user_id, idempotency_key)
        attempt = _Attempt(
            user_id, screening_id, seats, token, idempotency_key, lines, totals, promo
        )
        if promo is not None and await self._promo_filtered(promo):
            await _admit(admission)
            return await self._promo_refused(attempt, "promo_code_exhausted", claimed=False)

        claim = await self._claim(attempt, admission)
        if claim.taken:
            return await self._seats_taken(attempt, "redis", claim.taken, claimed=False)
        try:
            booking = await self._commit(attempt, snapshot)
        except SeatsUnavailable as exc:
            return await self._seats_taken(attempt, "postgres", exc.seat_ids, claim.claimed)
        except PromoUseRefused as exc:
            return await self._promo_refused(attempt, exc.reason, claim.claimed)
        except IdempotencyKeyTaken:
            return await self._seats_taken(attempt, "postgres", seats, claim.claimed)
        except CustomerLimitReached as exc:
            return await self._seats_taken(attempt, "postgres", (), claim.claimed, error=exc)
        except BaseException:
            if claim.claimed:
                await self._release_quietly(screening_id, seats, token)
            raise

        await self._extend_in_background(booking)
        return await self._booked(booking)

    async def _booked(self, booking: Booking) -> BookingResult:
        self.events.created(booking)
        booking = await self._start_payment(booking, owner=True)
        await self._schedule_expiry(booking)
        return BookingResult(booking, replayed=False)

    async def _promo_for(
        self, code: str | None, screening_id: int, lines: Sequence[TicketLine], now: datetime
    ) -> PromoCode | None:
        if code is None:
            return None
        if self._promos is None:
            raise PromoCodeInvalid("unknown", "promo codes are not offered here")
        promo = await self._promos.lookup(code)
        pricing.check_promo(promo, screening_id, lines, now)
        return promo

    async def _promo_filtered(self, promo: PromoCode) -> bool:
        """Whether the filter remembers PostgreSQL saying the code has no uses left."""
        return self._filter_enabled and await self._promo_filter.promo_exhausted(promo.id)

    async def _promo_refused(self, attempt: _Attempt, reason: str, claimed: bool) -> BookingResult:
        """No use of the code was taken, so nothing was booked. A retry of a request that did
        book (same Idempotency-Key) answers that booking; otherwise free our claim, remember
        an exhausted code in the filter for a moment, and refuse."""
        replay = await self._replay(attempt)
        if claimed and (replay is None or replay.booking.status is BookingStatus.CANCELLED):
            await self._release_quietly(attempt.screening_id, attempt.seats, attempt.token)
        if replay is not None:
            return replay
        promo = attempt.promo
        assert promo is not None
        if reason == "promo_code_invalid":
            raise PromoCodeInvalid("inactive", f"promo code {promo.code} is no longer valid")
        if reason == "promo_code_customer_limit":
            raise PromoCodeExhausted(
                f"you have used promo code {promo.code} the {promo.max_uses_per_customer}"
                " time(s) it allows per customer"
            )
        if self._filter_enabled:
            await self._promo_filter.mark_promo_exhausted(promo.id, self._claim_window)
        raise PromoCodeExhausted(f"promo code {promo.code} has no uses left")

    async def _book_places(
        self,
        user_id: int,
        screening_id: int,
        requests: Sequence[TicketRequest],
        idempotency_key: str | None,
        promo_code: str | None,
    ) -> BookingResult:
        """General admission: as many places as `requests`, whichever PostgreSQL hands out.
        The filter holds no per-place keys, only the sold-out marker: once PostgreSQL has said
        how few places are left, larger requests are refused without a transaction for a
        short window (the claim window; any release deletes it sooner)."""
        quantity = rules.normalize_quantity(len(requests))
        snapshot = await self._snapshot(screening_id)
        rules.ensure_form(snapshot, general_admission=True)
        now = self._clock()
        rules.ensure_bookable(snapshot, (), now)
        lines = rules.priced_places(snapshot, requests)
        promo = await self._promo_for(promo_code, screening_id, lines, now)
        screening = snapshot.screening
        totals = pricing.totals(lines, screening.fees, screening.currency, promo)
        token = hold_token(user_id, idempotency_key)
        attempt = _Attempt(
            user_id, screening_id, (), token, idempotency_key, lines, totals, promo, quantity
        )
        if promo is not None and await self._promo_filtered(promo):
            return await self._promo_refused(attempt, "promo_code_exhausted", claimed=False)
        left = await self._places_left(screening_id)
        if left is not None and quantity > left:
            return await self._seats_taken(attempt, "redis", (), False, error=SoldOut(left))
        try:
            booking = await self._commit(attempt, snapshot)
        except SoldOut as exc:
            if exc.certain:  # places others are still booking may come free: not "sold out"
                await self._note_sold_out(screening_id, exc.available)
            return await self._seats_taken(attempt, "postgres", (), False, error=exc)
        except PromoUseRefused as exc:
            return await self._promo_refused(attempt, exc.reason, claimed=False)
        except (IdempotencyKeyTaken, CustomerLimitReached) as exc:
            error = exc if isinstance(exc, CustomerLimitReached) else SoldOut(0)
            return await self._seats_taken(attempt, "postgres", (), False, error=error)
        return await self._booked(booking)

    async def _places_left(self, screening_id: int) -> int | None:
        if not self._filter_enabled:
            return None
        check = await self._holds.places_left(screening_id)
        if not check.reachable:
            self.events.redis_fallback()
            log.warning("sold-out filter unreachable; booking through PostgreSQL alone")
        return check.left

    async def _note_sold_out(self, screening_id: int, available: int) -> None:
        if not self._filter_enabled:
            return
        try:
            await asyncio.shield(
                self._holds.note_sold_out(screening_id, available, self._claim_window)
            )
        except Exception as exc:
            log.warning("could not mark screening %s sold out: %r", screening_id, exc)

    async def _claim(self, attempt: _Attempt, admission: Admission | None) -> HoldClaim:
        """Claim the seats in the filter for the provisional window only: a claim whose
        booking never commits frees itself within seconds. A filter that is off or does
        not answer claims nothing and turns nobody away: PostgreSQL alone decides.
        `admission` rides on the claim's round trip where the filter can take it; a refusal
        frees whatever was claimed alongside it."""
        if not self._filter_enabled:
            await _admit(admission)
            return HoldClaim(claimed=False)
        claim = await self._holds.claim(
            attempt.screening_id, attempt.seats, attempt.token, self._claim_window, admission
        )
        if not claim.reachable:
            self.events.redis_fallback()
            log.warning("seat filter unreachable; booking through PostgreSQL alone")
        try:
            await _admit(admission)
        except BaseException:
            if claim.claimed:
                await self._release_quietly(attempt.screening_id, attempt.seats, attempt.token)
            raise
        return claim

    async def _seats_taken(
        self,
        attempt: _Attempt,
        caught_by: ConflictSource,
        taken: Sequence[int],
        claimed: bool,
        error: Exception | None = None,
    ) -> BookingResult:
        """The conflict branch. The seats may be taken by this very request's earlier try
        (same Idempotency-Key): then answer with that booking. Otherwise free our claim and
        answer 409. A live replay keeps the claim: it shares the earlier booking's token. So
        does a replay that fails (the key names another request, the provider is down): its
        claim may be the earlier booking's keys, and a claim of our own lapses by itself."""
        replay = await self._replay(attempt)
        if claimed and (replay is None or replay.booking.status is BookingStatus.CANCELLED):
            await self._release_quietly(attempt.screening_id, attempt.seats, attempt.token)
        if replay is not None:
            return replay
        self.events.conflicted(caught_by, taken)
        raise error or SeatsUnavailable(list(taken))

    async def _extend_in_background(self, booking: Booking) -> None:
        """Committed: extend the filter's keys to the deadline without the buyer waiting for
        it (the provisional claim covers the gap; PostgreSQL decides meanwhile). The task
        runs outside the request's context: no part of the request waits for or times it."""
        if not self._filter_enabled:
            return
        if len(self._extending) >= _MAX_EXTENDING:
            await asyncio.shield(self._hold_until_deadline(booking))
            return
        key = (booking.screening_id, booking.hold_token)
        task = asyncio.get_running_loop().create_task(
            self._hold_until_deadline(booking),
            name=f"extend-hold-{booking.id}",
            context=contextvars.Context(),
        )
        self._extending[key] = task
        task.add_done_callback(lambda done: self._extended(key, done))

    def _extended(self, key: tuple[int, str], task: asyncio.Task[None]) -> None:
        if self._extending.get(key) is task:
            del self._extending[key]

    async def _hold_until_deadline(self, booking: Booking) -> None:
        try:
            await self._holds.hold_until(
                booking.screening_id, booking.seat_ids, booking.hold_token, booking.expires_at
            )
        except Exception as exc:
            # The keys stay provisional and lapse: buyers then reach PostgreSQL, which says no.
            log.warning("could not extend the seat keys of booking %s: %r", booking.id, exc)

    async def _extension_done(self, screening_id: int, token: str) -> None:
        """Wait (at most the claim window) for the keys' extension still under way."""
        task = self._extending.get((screening_id, token))
        if task is not None:
            await asyncio.wait({task}, timeout=self._claim_window)

    @property
    def extending(self) -> int:
        """Hold extensions not finished yet."""
        return len(self._extending)

    async def close(self) -> None:
        """Let the hold extensions in flight finish for up to the claim window (after it the
        provisional claims they would extend have lapsed anyway), then drop the rest."""
        if not self._extending:
            return
        tasks = set(self._extending.values())
        _, late = await asyncio.wait(tasks, timeout=self._claim_window)
        if late:
            log.warning("dropping %d seat-hold extension(s) at shutdown", len(late))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _schedule_expiry(self, booking: Booking) -> None:
        try:
            await self._expiry.schedule(booking)
        except Exception as exc:
            # The booking stands: its deadline lives in PostgreSQL, and the worker's
            # reconciler ends it even without a scheduled task.
            log.warning("could not schedule expiry of booking %s: %r", booking.id, exc)

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
        except Exception:
            if owner:  # a replay leaves the booking to the request that made it
                await self._abandon(booking)
            raise
        try:
            stored = await self._store.attach_payment(
                booking.id, self._payments.provider, intent.id, intent.client_secret
            )
        except Exception:
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
                    ended = await self._store.end_booking(
                        booking.id,
                        BookingStatus.CANCELLED,
                        CancelReason.PAYMENT_UNAVAILABLE.value,
                    )
                except Exception as exc:
                    log.warning("could not cancel abandoned booking %s: %r", booking.id, exc)
                    continue
                if ended is not None:
                    self.events.cancelled(ended, CancelReason.PAYMENT_UNAVAILABLE.value)
                break
            else:
                log.error("abandoned booking %s stays until its deadline", booking.id)
        finally:
            await self._release_booking(booking)
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

    async def _commit(self, attempt: _Attempt, snapshot: ScreeningSnapshot) -> Booking:
        booking = await self._create(attempt, snapshot)
        if attempt.promo is not None:
            booking = dataclasses.replace(booking, promo_code=attempt.promo.code)
        return booking

    async def _create(self, attempt: _Attempt, snapshot: ScreeningSnapshot) -> Booking:
        screening = snapshot.screening
        for _ in range(_REFERENCE_ATTEMPTS):
            try:
                return await self._store.create_booking(
                    NewBooking(
                        reference=new_reference(),
                        user_id=attempt.user_id,
                        screening_id=screening.id,
                        hall_id=screening.hall_id,
                        seat_ids=attempt.seats,
                        amount=attempt.totals.total,
                        currency=screening.currency,
                        hold_ttl_seconds=self._hold_ttl,
                        hold_token=attempt.token,
                        idempotency_key=attempt.idempotency_key,
                        lines=attempt.lines,
                        subtotal=attempt.totals.subtotal,
                        discount=attempt.totals.discount,
                        fees=attempt.totals.fees,
                        promo_code_id=None if attempt.promo is None else attempt.promo.id,
                        general_admission=screening.general_admission,
                        max_tickets_per_customer=screening.max_tickets_per_customer,
                    )
                )
            except ReferenceTaken:
                continue
        raise RuntimeError("could not find a free booking reference")

    async def _replay(self, attempt: _Attempt) -> BookingResult | None:
        if attempt.idempotency_key is None:
            return None
        earlier = await self._store.booking_by_idempotency_key(
            attempt.user_id, attempt.idempotency_key
        )
        if earlier is None:
            return None
        if (
            earlier.screening_id != attempt.screening_id
            or not _same_request(earlier, attempt)
            or earlier.promo_code_id != (None if attempt.promo is None else attempt.promo.id)
        ):
            await self._release_claim_beside(attempt, earlier)
            raise IdempotencyKeyReused()
        # A replay answers with the same payment; if the first request died before creating
        # it, the replay creates it (the provider's idempotency key keeps it to one intent).
        return BookingResult(await self._start_payment(earlier, owner=False), replayed=True)

    async def _release_claim_beside(self, attempt: _Attempt, earlier: Booking) -> None:
        """The key names another request: free what this one claimed, but not the earlier
        booking's seats (its keys carry the same token)."""
        keep = set(earlier.seat_ids) if earlier.screening_id == attempt.screening_id else set()
        ours = tuple(s for s in attempt.seats if s not in keep)
        if self._filter_enabled and ours:
            await self._release_quietly(attempt.screening_id, ours, attempt.token)

    async def _release_booking(self, booking: Booking) -> None:
        """Free an ended booking's keys. While Redis is unreachable the holds adapter keeps
        trying until the hold's deadline (after it the keys are free anyway), and every API
        process's sweep (release_ended_holds) catches any this process never got to."""
        await self._release_quietly(
            booking.screening_id, booking.seat_ids, booking.hold_token, booking.expires_at
        )
        if booking.promo_code_id is not None and self._filter_enabled:
            # Its use went back in the transaction that ended it: buyers may have it now.
            await self._promo_filter.clear_promo_exhausted(booking.promo_code_id)

    async def _release_quietly(
        self,
        screening_id: int,
        seats: tuple[int, ...],
        token: str,
        until: datetime | None = None,
    ) -> None:
        """Free our keys (after their extension, if one is under way); a failure only leaves
        keys that lapse or get swept on their own."""
        if not self._filter_enabled:
            return
        try:
            await self._extension_done(screening_id, token)
            await asyncio.shield(self._holds.release(screening_id, seats, token, until))
        except Exception:
            log.exception("could not release seat holds; they lapse or get swept")

    async def release_ended_holds(self) -> int:
        """Release the filter keys of every booking that ended before its deadline, in case
        its own release never ran (Redis down then, the process killed right after the
        commit, a late command re-writing them). Idempotent and token-checked, so it never
        frees a seat someone else holds now. Returns how many keys it freed."""
        if not self._filter_enabled:
            return 0
        freed, after_id = 0, 0
        while True:
            ended = await self._store.cancelled_before_deadline(_SWEEP_BATCH, after_id)
            if ended:
                freed += await self._holds.release_many(
                    [HeldSeats(b.screening_id, b.seat_ids, b.hold_token) for b in ended]
                )
                after_id = ended[-1].id
            if len(ended) < _SWEEP_BATCH:
                return freed

    async def release_ended_holds_forever(self, every_seconds: float) -> None:
        """Run release_ended_holds every `every_seconds` until cancelled."""
        while True:
            await asyncio.sleep(every_seconds)
            try:
                freed = await self.release_ended_holds()
            except Exception as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise asyncio.CancelledError() from exc  # a cancel lost as a timeout
                log.warning("sweep of ended bookings' seat keys failed (%r); next round", exc)
                continue
            if freed:
                log.info("released %d seat key(s) of bookings that ended early", freed)

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
        if booking.status in rules.SHOW_OVER:
            raise BookingNotCancellable(
                f"booking {booking_id} is {booking.status.value}: its screening is over"
            )
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
        self.events.cancelled(ended, CancelReason.USER.value)
        await self._release_booking(ended)
        await self.cancel_payment_later(ended)
        return ended

    async def end_pending(self, booking_id: int, reason: str) -> Booking | None:
        """Staff end a PENDING booking (its screening was cancelled): as `cancel`, for any
        owner; None if it was not PENDING any more."""
        ended = await self._store.end_booking(booking_id, BookingStatus.CANCELLED, reason)
        if ended is None:
            return None
        self.events.cancelled(ended, reason)
        await self._release_booking(ended)
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

    async def end_started(self, batch_size: int) -> list[Booking]:
        """One batch of PENDING holds of started screenings ended: they can no longer be paid
        (a payment that still arrives is refunded by settlement), so their seats' keys go and
        their intents are closed."""
        ended = await self._store.end_started(batch_size)
        for booking in ended:
            self.events.cancelled(booking, booking.cancel_reason)
            await self._release_booking(booking)
            await self.cancel_payment_later(booking)
        return ended

    async def finish_ended(self, batch_size: int) -> list[Booking]:
        """One batch of CONFIRMED bookings of ended screenings moved to COMPLETED or NO_SHOW
        (terminal). Idempotent: the worker calls it until a batch comes back short."""
        return await self._store.finish_ended(batch_size)

    async def _after_expiry(self, ended: Booking) -> None:
        self.events.expired(ended)
        await self._release_booking(ended)
        await self.cancel_payment_later(ended)

    async def seat_map(self, screening_id: int) -> SeatMap:
        snapshot = await self._snapshot(screening_id)
        capacity = snapshot.screening.capacity
        if capacity is not None:  # general admission: counts, no seats
            locked, sold = await self._store.place_counts(screening_id)
            return SeatMap(screening_id, (), rules.place_counts(capacity, locked, sold))
        return self._seat_maps.build(snapshot, await self._store.live_reservations(screening_id))
