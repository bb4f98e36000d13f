"""In-memory fakes of the booking ports (cinema/booking/ports.py), for unit tests that run
without PostgreSQL or Redis. They keep the ports' contracts as the real adapters do, so a
service bug fails a unit test the same way it would fail against the real parts:

- FakeSeatHolds follows lua/claim_seats.lua: all-or-nothing, a holder's own keys are no
  conflict, a key past its holder's deadline is stale, "sold" markers are permanent.
- FakeTables is the PostgreSQL schema: one live reservation per (screening, seat), one
  booking per (user, idempotency key), unique references and intent ids; a method that raises
  has changed nothing (a rolled-back transaction).
- Every call yields to the event loop once before its atomic body (a round trip), so
  concurrent coroutines interleave between calls, as requests do between statements.

The fakes never replace the real-database tests; they sit beside them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cinema.booking.errors import (
    IdempotencyKeyTaken,
    InvalidWebhook,
    PaymentProviderUnavailable,
    ReferenceTaken,
    SeatsUnavailable,
)
from cinema.booking.model import (
    Booking,
    BookingStatus,
    CancelReason,
    LiveReservation,
    NewBooking,
    Payment,
    PaymentEvent,
    PaymentEventKind,
    PaymentStatus,
    Settlement,
    SettlementOutcome,
)
from cinema.booking.ports import (
    Admission,
    ConflictSource,
    HeldSeats,
    HoldClaim,
    IntentHandle,
    PlacesCheck,
)
from cinema.booking.rules import SettleAction, settle_action
from cinema.booking.service import BookingService
from cinema.booking.settlement import PaymentCanceller, PaymentSettlement
from cinema.catalogue.model import Screening, ScreeningSnapshot, Seat
from cinema.pricing.model import TicketLine

PENDING, CONFIRMED, CANCELLED = (
    BookingStatus.PENDING,
    BookingStatus.CONFIRMED,
    BookingStatus.CANCELLED,
)
_EXPIRED = CancelReason.EXPIRED.value


async def round_trip() -> None:
    """Where a real adapter waits for the network: other coroutines run here."""
    await asyncio.sleep(0)


class FakeClock:
    """The one clock of a fake world: the service's, Redis' and PostgreSQL's `now()`."""

    def __init__(self, start: datetime = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Unreachable(ConnectionError):
    """What a fake raises when told it is down (as redis-py raises ConnectionError)."""


# --- Redis: seat holds --------------------------------------------------------------------

SOLD = "sold"


@dataclass(frozen=True, slots=True)
class _HoldKey:
    owner: str  # a hold token, or SOLD
    deadline: datetime | None  # the holder's deadline; None for SOLD
    gone_at: datetime | None  # when Redis forgets the key (PX: ttl + grace); None: never


class FakeSeatHolds:
    """SeatHolds with lua/'s semantics. `reachable = False` is Redis down; `flush()` is Redis
    losing every key."""

    def __init__(self, clock: FakeClock, grace_seconds: int = 5) -> None:
        self._clock = clock
        self._grace = timedelta(seconds=grace_seconds)
        self._keys: dict[tuple[int, int], _HoldKey] = {}
        self.reachable = True
        self.pending_releases: list[HeldSeats] = []

    def holder(self, screening_id: int, seat_id: int) -> str | None:
        """The seat key's owner (a token or SOLD), None when there is no key."""
        key = self._get((screening_id, seat_id))
        return None if key is None else key.owner

    def flush(self) -> None:
        self._keys.clear()

    def _get(self, name: tuple[int, int]) -> _HoldKey | None:
        key = self._keys.get(name)
        if key is not None and key.gone_at is not None and key.gone_at <= self._clock():
            del self._keys[name]
            return None
        return key

    async def claim(
        self,
        screening_id: int,
        seat_ids: Sequence[int],
        token: str,
        ttl_seconds: float,
        admission: Admission | None = None,
    ) -> HoldClaim:
        """Never decides `admission` (the service then asks it on its own)."""
        await round_trip()
        if not self.reachable:
            return HoldClaim(claimed=False, reachable=False)
        now = self._clock()
        names = [(screening_id, s) for s in seat_ids]
        taken, stale = [], []
        for seat_id, name in zip(seat_ids, names, strict=True):
            key = self._get(name)
            if key is None or key.owner == token:
                continue
            if key.deadline is not None and key.deadline <= now:
                stale.append(name)
            else:
                taken.append(seat_id)
        if taken:
            return HoldClaim(claimed=False, taken=tuple(taken))
        for name in stale:
            del self._keys[name]
        ttl = timedelta(seconds=ttl_seconds)
        for name in names:  # SET NX: a key this holder already has keeps its deadline
            self._keys.setdefault(name, _HoldKey(token, now + ttl, now + ttl + self._grace))
        return HoldClaim(claimed=True)

    async def hold_until(
        self, screening_id: int, seat_ids: Sequence[int], token: str, deadline: datetime
    ) -> None:
        await self._reach()
        for seat_id in seat_ids:  # unconditional, as hold_seats.lua: only sold markers stay
            key = self._get((screening_id, seat_id))
            if key is None or key.owner != SOLD:
                gone_at = deadline + self._grace
                self._keys[(screening_id, seat_id)] = _HoldKey(token, deadline, gone_at)

    async def release(
        self,
        screening_id: int,
        seat_ids: Sequence[int],
        token: str,
        until: datetime | None = None,
    ) -> None:
        """With `until`, an unreachable fake keeps the release and applies it on the next
        call that reaches it (the real adapter retries in the background)."""
        if not self.reachable and until is not None:
            await round_trip()
            self.pending_releases.append(HeldSeats(screening_id, tuple(seat_ids), token))
            return
        await self._reach()
        self._release_now(HeldSeats(screening_id, tuple(seat_ids), token))

    async def release_many(self, holds: Sequence[HeldSeats]) -> int:
        await self._reach()
        return sum(self._release_now(held) for held in holds)

    def _release_now(self, held: HeldSeats) -> int:
        freed = 0
        for seat_id in held.seat_ids:
            key = self._get((held.screening_id, seat_id))
            if key is not None and key.owner == held.token:
                del self._keys[(held.screening_id, seat_id)]
                freed += 1
        return freed

    async def places_left(self, screening_id: int) -> PlacesCheck:
        return PlacesCheck()  # general admission is tested against real Redis only

    async def note_sold_out(self, screening_id: int, available: int, ttl_seconds: float) -> None:
        return None

    async def mark_sold(self, screening_id: int, seat_ids: Sequence[int]) -> None:
        await self._reach()
        for seat_id in seat_ids:
            self._keys[(screening_id, seat_id)] = _HoldKey(SOLD, None, None)

    async def _reach(self) -> None:
        await round_trip()
        if not self.reachable:
            raise Unreachable("fake redis is down")
        while self.pending_releases:
            self._release_now(self.pending_releases.pop(0))


# --- PostgreSQL: bookings, reservations, payment events -----------------------------------


class UniqueViolation(Exception):
    """A unique index the real store does not map to a domain error (asyncpg would raise
    UniqueViolationError): the service should never cause one."""


@dataclass(slots=True)
class _BookingRow:
    id: int
    reference: str
    user_id: int
    screening_id: int
    status: BookingStatus
    amount: int
    currency: str
    expires_at: datetime
    hold_token: str
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    cancel_reason: str | None = None
    payment: Payment | None = None
    refund_id: str | None = None
    tickets: tuple[TicketLine, ...] = ()
    subtotal: int | None = None
    discount: int = 0
    fees: int = 0
    promo_code: str | None = None
    promo_code_id: int | None = None
    refunded: int = 0


@dataclass(slots=True)
class _ReservationRow:
    booking_id: int
    screening_id: int
    seat_id: int
    status: BookingStatus
    expires_at: datetime


_BOOKING_FIELDS = [f for f in fields(Booking) if f.name not in ("seat_ids", "general_admission")]


@dataclass
class FakeTables:
    """The rows PostgreSQL would hold, shared by the booking and the settlement store."""

    clock: FakeClock
    seats: set[int] = field(default_factory=set)  # the seats table: what can be locked
    bookings: dict[int, _BookingRow] = field(default_factory=dict)
    reservations: list[_ReservationRow] = field(default_factory=list)
    payment_events: dict[str, SettlementOutcome | None] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> int:
        return next(self._ids)

    def booking(self, booking_id: int) -> Booking | None:
        row = self.bookings.get(booking_id)
        if row is None:
            return None
        seats = tuple(sorted(r.seat_id for r in self.reservations if r.booking_id == row.id))
        columns: dict[str, Any] = {f.name: getattr(row, f.name) for f in _BOOKING_FIELDS}
        return Booking(seat_ids=seats, **columns)

    def find(self, *, user_id: int | None = None, **equal: object) -> list[_BookingRow]:
        return [
            row
            for row in self.bookings.values()
            if (user_id is None or row.user_id == user_id)
            and all(getattr(row, name) == value for name, value in equal.items())
        ]

    def by_intent(self, intent_id: str | None) -> int | None:
        for row in self.bookings.values():
            if row.payment is not None and row.payment.intent_id == intent_id:
                return row.id
        return None

    def live_conflicts(
        self, screening_id: int, seat_ids: Iterable[int]
    ) -> tuple[list[int], set[int]]:
        """_LIVE_CONFLICTS: the seats held live, and the bookings whose holds have lapsed."""
        wanted, now = set(seat_ids), self.clock()
        taken, lapsed = [], set()
        for r in self.reservations:
            if r.screening_id != screening_id or r.seat_id not in wanted or r.status is CANCELLED:
                continue
            if r.status is PENDING and r.expires_at <= now:
                lapsed.add(r.booking_id)
            else:
                taken.append(r.seat_id)
        return sorted(taken), lapsed

    def end(
        self, booking_ids: Iterable[int], target: BookingStatus, reason: str | None, due: bool
    ) -> list[int]:
        """_END_BOOKINGS: move PENDING bookings (only those past their deadline when `due`)
        and their PENDING reservations to `target`; the ids it moved."""
        now, moved = self.clock(), []
        for booking_id in booking_ids:
            row = self.bookings.get(booking_id)
            if row is None or row.status is not PENDING or (due and row.expires_at > now):
                continue
            row.status, row.cancel_reason, row.updated_at = target, reason, now
            self._move_reservations(booking_id, target, only=PENDING)
            moved.append(booking_id)
        return moved

    def confirm(self, booking_id: int) -> None:
        """settlement's _CONFIRM: every reservation of the booking, cancelled ones too."""
        row = self.bookings[booking_id]
        row.status, row.cancel_reason, row.updated_at = CONFIRMED, None, self.clock()
        row.payment = _with_status(row.payment, PaymentStatus.SUCCEEDED)
        self._move_reservations(booking_id, CONFIRMED, only=None)

    def _move_reservations(
        self, booking_id: int, target: BookingStatus, only: BookingStatus | None
    ) -> None:
        moving = [
            r
            for r in self.reservations
            if r.booking_id == booking_id and (only is None or r.status is only)
        ]
        for r in moving:  # the partial unique index: a cancelled row may not come back live
            if r.status is CANCELLED and target is not CANCELLED and self._held(r):
                raise UniqueViolation("reservations_live_seat_uidx")
        for r in moving:
            r.status = target

    def _held(self, row: _ReservationRow) -> bool:
        return any(
            r.screening_id == row.screening_id and r.seat_id == row.seat_id
            for r in self.reservations
            if r.status is not CANCELLED
        )

    def assert_consistent(self) -> None:
        """The schema's invariants, as a test reads them back from PostgreSQL."""
        live = [(r.screening_id, r.seat_id) for r in self.reservations if r.status is not CANCELLED]
        assert len(live) == len(set(live)), "a seat has two live reservations"
        keys = [(b.user_id, b.idempotency_key) for b in self.bookings.values() if b.idempotency_key]
        assert len(keys) == len(set(keys)), "an idempotency key names two bookings"
        for r in self.reservations:
            assert r.status is self.bookings[r.booking_id].status, "reservation status drifted"


def _with_status(payment: Payment | None, status: PaymentStatus) -> Payment | None:
    return None if payment is None else replace(payment, status=status)


class FakeBookingStore:
    """BookingStore over FakeTables, statement for statement like PgBookingStore."""

    def __init__(self, tables: FakeTables) -> None:
        self._t = tables
        self.down = False  # PostgreSQL unreachable: every call raises

    async def _begin(self) -> FakeTables:
        await round_trip()
        if self.down:
            raise Unreachable("fake postgres is down")
        return self._t

    async def create_booking(self, new: NewBooking) -> Booking:
        t = await self._begin()
        missing = [s for s in new.seat_ids if s not in t.seats]
        if missing:
            raise SeatsUnavailable(missing)
        taken, lapsed = t.live_conflicts(new.screening_id, new.seat_ids)
        if taken:
            raise SeatsUnavailable(taken)
        # The INSERT's unique indexes, checked before anything is written (a failed INSERT
        # rolls back the lapsed holds ended above it, too).
        if t.find(reference=new.reference):
            raise ReferenceTaken()
        if new.idempotency_key is not None and t.find(
            user_id=new.user_id, idempotency_key=new.idempotency_key
        ):
            raise IdempotencyKeyTaken()
        t.end(sorted(lapsed), CANCELLED, _EXPIRED, due=False)
        now = t.clock()
        row = _BookingRow(
            id=t.next_id(),
            reference=new.reference,
            user_id=new.user_id,
            screening_id=new.screening_id,
            status=PENDING,
            amount=new.amount,
            currency=new.currency,
            expires_at=now + timedelta(seconds=new.hold_ttl_seconds),
            hold_token=new.hold_token,
            idempotency_key=new.idempotency_key,
            created_at=now,
            updated_at=now,
            tickets=new.ticket_lines(),
            subtotal=new.subtotal,
            discount=new.discount,
            fees=new.fees,
        )
        t.bookings[row.id] = row
        t.reservations.extend(
            _ReservationRow(row.id, new.screening_id, s, PENDING, row.expires_at)
            for s in new.seat_ids
        )
        return self._one(row.id)

    def _one(self, booking_id: int) -> Booking:
        booking = self._t.booking(booking_id)
        assert booking is not None
        return booking

    def _first(self, rows: list[_BookingRow]) -> Booking | None:
        return self._t.booking(rows[0].id) if rows else None

    async def booking(self, booking_id: int) -> Booking | None:
        return (await self._begin()).booking(booking_id)

    async def booking_by_idempotency_key(self, user_id: int, key: str) -> Booking | None:
        return self._first((await self._begin()).find(user_id=user_id, idempotency_key=key))

    async def bookings_of_user(self, user_id: int, limit: int, offset: int) -> list[Booking]:
        rows = (await self._begin()).find(user_id=user_id)
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [self._one(r.id) for r in rows[offset : offset + limit]]

    async def end_booking(
        self, booking_id: int, target: BookingStatus, reason: str | None
    ) -> Booking | None:
        moved = (await self._begin()).end([booking_id], target, reason, due=False)
        return self._one(booking_id) if moved else None

    async def live_reservations(self, screening_id: int) -> list[LiveReservation]:
        t = await self._begin()
        now = t.clock()
        return [
            LiveReservation(r.seat_id, r.status, r.expires_at <= now)
            for r in t.reservations
            if r.screening_id == screening_id and r.status is not CANCELLED
        ]

    async def place_counts(self, screening_id: int) -> tuple[int, int]:
        return 0, 0  # general admission is tested against real PostgreSQL only

    async def expire_booking(self, booking_id: int) -> Booking | None:
        moved = (await self._begin()).end([booking_id], CANCELLED, _EXPIRED, due=True)
        return self._one(booking_id) if moved else None

    async def expire_overdue(self, limit: int) -> list[Booking]:
        t = await self._begin()
        now = t.clock()
        due = sorted(
            (r for r in t.bookings.values() if r.status is PENDING and r.expires_at <= now),
            key=lambda r: r.expires_at,
        )[:limit]
        moved = t.end([r.id for r in due], CANCELLED, _EXPIRED, due=True)
        return [self._one(i) for i in sorted(moved)]

    async def booking_by_reference(self, user_id: int, reference: str) -> Booking | None:
        return self._first((await self._begin()).find(user_id=user_id, reference=reference))

    async def attach_payment(
        self, booking_id: int, provider: str, intent_id: str, client_secret: str
    ) -> Booking:
        t = await self._begin()
        row = t.bookings[booking_id]
        if row.payment is None:
            if t.by_intent(intent_id) is not None:
                raise UniqueViolation("bookings_payment_intent_uidx")
            row.payment = Payment(
                provider, intent_id, client_secret, PaymentStatus.REQUIRES_PAYMENT
            )
            row.updated_at = t.clock()
        return self._one(booking_id)

    async def set_payment_status(
        self, booking_id: int, status: PaymentStatus, expected: PaymentStatus
    ) -> bool:
        t = await self._begin()
        row = t.bookings.get(booking_id)
        if row is None or row.payment is None or row.payment.status is not expected:
            return False
        row.payment, row.updated_at = _with_status(row.payment, status), t.clock()
        return True

    async def cancelled_before_deadline(self, limit: int, after_id: int) -> list[Booking]:
        t = await self._begin()
        now = t.clock()
        rows = [r for r in t.find(status=CANCELLED) if r.expires_at > now and r.id > after_id]
        found = (t.booking(r.id) for r in sorted(rows, key=lambda r: r.id)[:limit])
        return [b for b in found if b is not None]

    async def ended_with_open_intent(self, limit: int) -> list[int]:
        open_ = (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.FAILED)
        rows = (await self._begin()).find(status=CANCELLED)
        return sorted(r.id for r in rows if r.payment and r.payment.status in open_)[:limit]


_CANCEL_REASON = {
    PaymentEventKind.FAILED: (PaymentStatus.FAILED, CancelReason.PAYMENT_FAILED),
    PaymentEventKind.CANCELED: (PaymentStatus.CANCELED, CancelReason.PAYMENT_CANCELED),
}


class FakeSettlementStore:
    """SettlementStore over FakeTables, like PgSettlementStore: the event id is recorded with
    the change it causes, so a duplicate changes nothing."""

    def __init__(self, tables: FakeTables) -> None:
        self._t = tables

    async def settle(self, event: PaymentEvent) -> Settlement:
        await round_trip()
        t = self._t
        booking_id = t.by_intent(event.intent_id)
        if event.id in t.payment_events:
            booking = None if booking_id is None else t.booking(booking_id)
            return Settlement(SettlementOutcome.DUPLICATE, booking)
        if booking_id is None:
            outcome = SettlementOutcome.UNKNOWN_INTENT
        else:
            outcome = self._apply(booking_id, event.kind)
        t.payment_events[event.id] = outcome
        return Settlement(outcome, None if booking_id is None else t.booking(booking_id))

    def _apply(self, booking_id: int, kind: PaymentEventKind) -> SettlementOutcome:
        t = self._t
        row = t.bookings[booking_id]
        paid = None if row.payment is None else row.payment.status
        action = settle_action(row.status, paid, kind)
        if action is SettleAction.CONFIRM:
            t.confirm(booking_id)
            return SettlementOutcome.CONFIRMED
        if action is SettleAction.CANCEL:
            status, reason = _CANCEL_REASON[kind]
            t.end([booking_id], CANCELLED, reason.value, due=False)
            row.payment = _with_status(row.payment, status)
            return SettlementOutcome.CANCELLED
        if action is SettleAction.RECLAIM:
            if self._seats_free(row.screening_id, booking_id):
                t.confirm(booking_id)
                return SettlementOutcome.CONFIRMED_LATE
            row.payment = _with_status(row.payment, PaymentStatus.REFUND_PENDING)
            row.updated_at = t.clock()
            return SettlementOutcome.REFUND_NEEDED
        return SettlementOutcome.IGNORED

    def _seats_free(self, screening_id: int, booking_id: int) -> bool:
        seat_ids = [r.seat_id for r in self._t.reservations if r.booking_id == booking_id]
        if not seat_ids:
            return False
        taken, lapsed = self._t.live_conflicts(screening_id, seat_ids)
        self._t.end(sorted(lapsed), CANCELLED, _EXPIRED, due=False)
        return not taken

    async def record_refund(self, booking_id: int, refund_id: str) -> None:
        await round_trip()
        row = self._t.bookings[booking_id]
        if row.payment is not None and row.payment.status is PaymentStatus.REFUND_PENDING:
            row.payment = _with_status(row.payment, PaymentStatus.REFUNDED)
            row.refund_id = refund_id


# --- The catalogue ------------------------------------------------------------------------


class FakeCatalogue:
    """ScreeningCatalogue; its screenings' seats are the rows FakeTables can lock."""

    def __init__(self, tables: FakeTables) -> None:
        self._tables = tables
        self._snapshots: dict[int, ScreeningSnapshot] = {}
        self._ids = itertools.count(1)

    def add_screening(
        self,
        categories: Sequence[str] = ("standard",) * 10,
        prices: dict[str, int] | None = None,
        starts_in: timedelta = timedelta(days=1),
        currency: str = "EUR",
    ) -> ScreeningSnapshot:
        """A screening with one seat per entry of `categories`, in one row "A"."""
        screening_id = next(self._ids)
        seats = []
        for number, category in enumerate(categories, start=1):
            seats.append(Seat(self._tables.next_id(), "A", 0, number, category))
            self._tables.seats.add(seats[-1].id)
        screening = Screening(
            id=screening_id,
            movie_id=1,
            hall_id=screening_id,
            starts_at=self._tables.clock() + starts_in,
            prices=prices or dict.fromkeys(set(categories), 1000),
            currency=currency,
        )
        snapshot = self._snapshots[screening_id] = ScreeningSnapshot.of(screening, tuple(seats))
        return snapshot

    async def snapshot(self, screening_id: int) -> ScreeningSnapshot | None:
        await round_trip()
        return self._snapshots.get(screening_id)


# --- The rest of the outside world --------------------------------------------------------


class FakeExpiry:
    """ExpiryScheduler: remembers what it was asked to schedule; `fail` makes it raise."""

    def __init__(self) -> None:
        self.scheduled: list[int] = []
        self.fail = False

    async def schedule(self, booking: Booking) -> None:
        await round_trip()
        if self.fail:
            raise Unreachable("fake task queue is down")
        self.scheduled.append(booking.id)


class FakeFollowUps:
    """FollowUps: remembers the work it was given (a real one would run it, retried)."""

    def __init__(self) -> None:
        self.cancelled_payments: list[int] = []
        self.tickets: list[int] = []

    async def cancel_payment(self, booking_id: int) -> None:
        self.cancelled_payments.append(booking_id)

    async def send_ticket(self, booking_id: int) -> None:
        self.tickets.append(booking_id)


class RecordingEvents:
    """BookingEvents: every call, in order, as (name, booking id or detail)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def created(self, booking: Booking) -> None:
        self.calls.append(("created", booking.id))

    def conflicted(self, caught_by: ConflictSource, seat_ids: Sequence[int]) -> None:
        self.calls.append((f"conflicted_{caught_by}", tuple(seat_ids)))

    def redis_fallback(self) -> None:
        self.calls.append(("redis_fallback", None))

    def confirmed(self, booking: Booking) -> None:
        self.calls.append(("confirmed", booking.id))

    def cancelled(self, booking: Booking, reason: str | None) -> None:
        self.calls.append(("cancelled", (booking.id, reason)))

    def expired(self, booking: Booking) -> None:
        self.calls.append(("expired", booking.id))

    def payment_mismatched(self, booking: Booking, event: PaymentEvent) -> None:
        self.calls.append(("payment_mismatched", (booking.id, event.id)))


_FAKE_KINDS = {kind.value: kind for kind in PaymentEventKind if kind is not PaymentEventKind.OTHER}


@dataclass
class _Intent:
    id: str
    booking_id: int
    status: PaymentStatus = PaymentStatus.REQUIRES_PAYMENT


class FakePayments:
    """PaymentGateway: one intent per booking, however often asked (the provider's idempotency
    key); `down` makes every call raise PaymentProviderUnavailable. Webhooks are JSON signed
    with HMAC-SHA256 of the body; `event()` writes one as the provider would."""

    provider = "fake"

    def __init__(self, secret: str = "whsec_fake") -> None:
        self._secret = secret.encode()
        self.intents: dict[str, _Intent] = {}
        self.refunds: dict[int, str] = {}
        self.down = False
        self.retryable = True  # what `down` says about trying again
        self.calls = 0

    async def _call(self) -> None:
        await round_trip()
        self.calls += 1
        if self.down:
            raise PaymentProviderUnavailable("the fake provider is down", self.retryable)

    async def create_intent(self, booking: Booking) -> IntentHandle:
        await self._call()
        intent_id = f"pi_{booking.id}_{booking.reference}"
        self.intents.setdefault(intent_id, _Intent(intent_id, booking.id))
        return IntentHandle(intent_id, f"{intent_id}_secret")

    async def cancel_intent(self, intent_id: str) -> bool:
        await self._call()
        intent = self.intents.get(intent_id)
        if intent is None or intent.status is not PaymentStatus.REQUIRES_PAYMENT:
            return False
        intent.status = PaymentStatus.CANCELED
        return True

    async def refund(self, booking: Booking) -> str:
        await self._call()
        if booking.payment is None:
            raise ValueError(f"booking {booking.id} has no payment to refund")
        return self.refunds.setdefault(booking.id, f"re_{booking.id}")

    def pay(self, intent_id: str) -> None:
        """The customer pays at the provider (the webhook is a separate delivery)."""
        self.intents[intent_id].status = PaymentStatus.SUCCEEDED

    def event(self, kind: str, intent_id: str | None, event_id: str) -> tuple[bytes, str]:
        """A signed delivery: (payload, signature). `kind` is a PaymentEventKind value or
        any other string (an event type nobody acts on)."""
        body = {"id": event_id, "type": f"fake.{kind}", "intent": intent_id}
        payload = json.dumps(body).encode()
        return payload, self._sign(payload)

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def parse_event(self, payload: bytes, signature: str | None) -> PaymentEvent:
        if signature is None or not hmac.compare_digest(signature, self._sign(payload)):
            raise InvalidWebhook("invalid signature")
        try:
            body = json.loads(payload)
            event_id, event_type = str(body["id"]), str(body["type"])
        except (ValueError, KeyError, TypeError):
            raise InvalidWebhook("the webhook body is not an event") from None
        kind = _FAKE_KINDS.get(event_type.removeprefix("fake."), PaymentEventKind.OTHER)
        intent = body.get("intent") if kind is not PaymentEventKind.OTHER else None
        return PaymentEvent(event_id, event_type, kind, intent)


# --- Wiring -------------------------------------------------------------------------------


class FakeWorld:
    """One set of fakes sharing a clock and a database, and the services built on them."""

    def __init__(self, grace_seconds: int = 5) -> None:
        self.clock = FakeClock()
        self.tables = FakeTables(self.clock)
        self.holds = FakeSeatHolds(self.clock, grace_seconds)
        self.store = FakeBookingStore(self.tables)
        self.settlement_store = FakeSettlementStore(self.tables)
        self.catalogue = FakeCatalogue(self.tables)
        self.expiry = FakeExpiry()
        self.payments = FakePayments()
        self.follow_ups = FakeFollowUps()
        self.events = RecordingEvents()

    def service(
        self, *, paid: bool = False, filter_enabled: bool = True, hold_ttl_seconds: int = 900
    ) -> BookingService:
        """`paid`: with the payment gateway (bookings get an intent), else without."""
        return BookingService(
            holds=self.holds,
            store=self.store,
            catalogue=self.catalogue,
            expiry=self.expiry,
            hold_ttl_seconds=hold_ttl_seconds,
            filter_enabled=filter_enabled,
            clock=self.clock,
            events=self.events,
            payments=self.payments if paid else None,
            follow_ups=self.follow_ups,
        )

    def settlement(self, *, paid: bool = True) -> PaymentSettlement:
        return PaymentSettlement(
            gateway=self.payments if paid else None,
            store=self.settlement_store,
            holds=self.holds,
            follow_ups=self.follow_ups,
            events=self.events,
        )

    def canceller(self) -> PaymentCanceller:
        return PaymentCanceller(gateway=self.payments, store=self.store)
