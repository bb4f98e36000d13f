"""BookingService on in-memory fakes of its ports (tests/fakes.py): every branch of booking,
cancelling, expiring and the seat map, in milliseconds, without PostgreSQL or Redis. The same
behaviour is tested over HTTP against the real parts in test_bookings.py and friends."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from cinema.booking import service as service_module
from cinema.booking.errors import (
    BookingNotCancellable,
    BookingNotFound,
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
    InvalidSelection,
    PaymentProviderUnavailable,
    ReferenceTaken,
    ScreeningNotFound,
    ScreeningStarted,
    SeatsNotInHall,
    SeatsUnavailable,
)
from cinema.booking.identifiers import hold_token
from cinema.booking.model import (
    Booking,
    BookingStatus,
    CancelReason,
    NewBooking,
    PaymentStatus,
    SeatStatus,
)
from cinema.booking.ports import HoldClaim, SeatHolds
from cinema.booking.service import BookingService
from cinema.catalogue.model import ScreeningSnapshot
from tests.conftest import REDIS_URL
from tests.fakes import FakePayments, FakeWorld

ALICE, BOB = 1, 2
TTL = 900


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
def svc(world: FakeWorld) -> BookingService:
    return world.service()


@pytest.fixture
def paid(world: FakeWorld) -> BookingService:
    return world.service(paid=True)


@pytest.fixture
def show(world: FakeWorld) -> ScreeningSnapshot:
    return world.catalogue.add_screening(
        ("standard",) * 8 + ("vip",) * 2, {"standard": 1000, "vip": 2500}
    )


def seats(show: ScreeningSnapshot, *numbers: int) -> list[int]:
    """Seat ids by seat number (1-based)."""
    return [show.seats[n - 1].id for n in numbers]


def row_of(world: FakeWorld, booking: Booking) -> Booking:
    stored = world.tables.booking(booking.id)
    assert stored is not None
    return stored


# --- booking ------------------------------------------------------------------------------


async def test_a_booking_is_held_in_redis_and_written_pending(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    wanted = seats(show, 10, 2)
    result = await svc.book(ALICE, show.screening.id, wanted)

    booking = result.booking
    assert not result.replayed
    assert booking.status is BookingStatus.PENDING
    assert booking.seat_ids == tuple(sorted(wanted))
    assert booking.amount == 1000 + 2500
    assert booking.expires_at == world.clock() + timedelta(seconds=TTL)
    assert row_of(world, booking) == booking
    assert all(world.holds.holder(show.screening.id, s) == booking.hold_token for s in wanted)
    assert world.events.calls == [("created", booking.id)]
    assert world.expiry.scheduled == [booking.id]
    assert booking.payment is None  # no provider configured


async def test_seats_held_in_redis_turn_the_loser_away_before_postgres(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    await svc.book(ALICE, show.screening.id, seats(show, 2))
    world.store.down = True  # the loser must not need PostgreSQL at all

    with pytest.raises(SeatsUnavailable) as caught:
        await svc.book(BOB, show.screening.id, seats(show, 1, 2, 3))

    assert caught.value.seat_ids == seats(show, 2)
    # all or nothing: the free seats of the failed claim were not taken either
    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) is None
    assert world.events.names()[-1] == "conflicted_redis"
    assert len(world.tables.bookings) == 1


async def test_postgres_catches_what_a_flushed_redis_lets_through(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    first = (await svc.book(ALICE, show.screening.id, seats(show, 2))).booking
    await svc.close()  # lets the hold's extension (after the answer) finish: flush after it
    world.holds.flush()

    with pytest.raises(SeatsUnavailable) as caught:
        await svc.book(BOB, show.screening.id, seats(show, 1, 2))

    assert caught.value.seat_ids == seats(show, 2)
    # the conflict names the seat PostgreSQL found taken, not the whole request
    assert world.events.calls[-1] == ("conflicted_postgres", tuple(seats(show, 2)))
    # the loser's claim is released, so it blocks nobody in the filter
    assert all(world.holds.holder(show.screening.id, s) is None for s in seats(show, 1, 2))
    assert [b.id for b in await svc.bookings_of(BOB)] == []
    assert row_of(world, first).status is BookingStatus.PENDING
    world.tables.assert_consistent()


async def test_redis_unreachable_books_through_postgres_alone(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    world.holds.reachable = False

    booking = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    with pytest.raises(SeatsUnavailable):
        await svc.book(BOB, show.screening.id, seats(show, 1))

    assert booking.status is BookingStatus.PENDING
    assert world.events.names() == [
        "redis_fallback",
        "created",
        "redis_fallback",
        "conflicted_postgres",
    ]
    world.tables.assert_consistent()


async def test_with_the_filter_off_redis_is_never_asked(
    world: FakeWorld, show: ScreeningSnapshot
) -> None:
    svc = world.service(filter_enabled=False)
    world.holds.reachable = False  # would show up as a fallback if it were asked

    booking = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    await svc.cancel(ALICE, booking.id)

    assert "redis_fallback" not in world.events.names()
    assert row_of(world, booking).status is BookingStatus.CANCELLED


async def test_an_unreachable_postgres_releases_the_claim(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    world.store.down = True
    with pytest.raises(ConnectionError):
        await svc.book(ALICE, show.screening.id, seats(show, 1))
    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) is None


async def test_a_release_that_fails_leaves_the_keys_to_their_ttl(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    booking = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    world.holds.reachable = False

    cancelled = await svc.cancel(ALICE, booking.id)  # does not raise

    assert cancelled.status is BookingStatus.CANCELLED
    world.holds.reachable = True
    world.clock.advance(TTL + 5)  # hold TTL + the holds' grace
    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) is None


@pytest.mark.parametrize(
    ("wanted", "error"),
    [([], InvalidSelection), ([1, 1], InvalidSelection), ([999], SeatsNotInHall)],
)
async def test_bad_selections_write_nothing(
    world: FakeWorld,
    svc: BookingService,
    show: ScreeningSnapshot,
    wanted: list[int],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await svc.book(
            ALICE, show.screening.id, [show.seats[0].id if s == 1 else s for s in wanted]
        )
    assert world.tables.bookings == {}
    assert world.holds.holder(show.screening.id, show.seats[0].id) is None


async def test_unknown_and_started_screenings_are_refused(
    world: FakeWorld, svc: BookingService
) -> None:
    started = world.catalogue.add_screening(starts_in=timedelta(seconds=-1))
    with pytest.raises(ScreeningNotFound):
        await svc.book(ALICE, 12345, [1])
    with pytest.raises(ScreeningStarted):
        await svc.book(ALICE, started.screening.id, [started.seats[0].id])
    with pytest.raises(ScreeningNotFound):
        await svc.seat_map(12345)
    assert world.tables.bookings == {}


async def test_a_colliding_reference_is_drawn_again(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    drawn = iter([first.reference, first.reference, "FRESH234"])
    monkeypatch.setattr(service_module, "new_reference", lambda: next(drawn))

    second = (await svc.book(BOB, show.screening.id, seats(show, 2))).booking

    assert second.reference == "FRESH234"


async def test_running_out_of_references_releases_the_claim(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    monkeypatch.setattr(service_module, "new_reference", lambda: first.reference)

    with pytest.raises(RuntimeError, match="reference"):
        await svc.book(BOB, show.screening.id, seats(show, 2))

    assert world.holds.holder(show.screening.id, seats(show, 2)[0]) is None
    assert len(world.tables.bookings) == 1


async def test_a_failing_expiry_schedule_keeps_the_booking(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    world.expiry.fail = True
    booking = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    assert row_of(world, booking).status is BookingStatus.PENDING
    assert world.expiry.scheduled == []


async def test_the_next_buyer_takes_a_lapsed_hold(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    lapsed = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    world.clock.advance(TTL)  # deadline reached; the Redis key lingers for its grace

    taken = (await svc.book(BOB, show.screening.id, seats(show, 1))).booking

    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) == taken.hold_token
    ended = row_of(world, lapsed)
    assert (ended.status, ended.cancel_reason) == (BookingStatus.CANCELLED, "expired")
    world.tables.assert_consistent()


# --- idempotent replay --------------------------------------------------------------------


async def test_a_retried_request_gets_the_same_booking(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    first = await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")
    again = await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")

    assert (first.replayed, again.replayed) == (False, True)
    assert again.booking == first.booking
    assert len(world.tables.bookings) == 1
    # the replay shares the first request's token, so the hold stays where it was
    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) == hold_token(ALICE, "key-1")
    assert world.events.names() == ["created"]


async def test_a_replay_after_the_sale_answers_the_booking_not_a_conflict(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    first = await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")
    await world.holds.mark_sold(show.screening.id, seats(show, 1))

    again = await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")

    assert again.replayed and again.booking.id == first.booking.id


async def test_the_same_key_for_other_seats_is_refused_and_releases_them(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")

    with pytest.raises(IdempotencyKeyReused):
        await svc.book(ALICE, show.screening.id, seats(show, 2), "key-1")

    assert world.holds.holder(show.screening.id, seats(show, 2)[0]) is None
    assert len(world.tables.bookings) == 1


async def test_the_same_key_after_redis_conflict_for_other_seats_is_refused(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")
    await svc.book(BOB, show.screening.id, seats(show, 2))
    with pytest.raises(IdempotencyKeyReused):
        await svc.book(ALICE, show.screening.id, seats(show, 2), "key-1")


async def test_a_key_is_per_user(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")
    bobs = await svc.book(BOB, show.screening.id, seats(show, 2), "key-1")
    assert not bobs.replayed
    with pytest.raises(SeatsUnavailable):
        await svc.book(BOB, show.screening.id, seats(show, 1), "key-2")


async def test_replaying_a_cancelled_booking_answers_it_and_frees_the_claim(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    first = await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")
    await svc.cancel(ALICE, first.booking.id)

    again = await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")

    assert again.replayed and again.booking.status is BookingStatus.CANCELLED
    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) is None
    assert len(world.tables.bookings) == 1


async def test_concurrent_retries_make_one_booking(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    results = await asyncio.gather(
        *(svc.book(ALICE, show.screening.id, seats(show, 1, 2), "key-1") for _ in range(20))
    )
    assert len({r.booking.id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * 19
    assert len(world.tables.bookings) == 1
    world.tables.assert_consistent()


# --- payments -----------------------------------------------------------------------------


async def test_a_paid_booking_carries_its_intent(
    world: FakeWorld, paid: BookingService, show: ScreeningSnapshot
) -> None:
    booking = (await paid.book(ALICE, show.screening.id, seats(show, 1), "key-1")).booking
    again = (await paid.book(ALICE, show.screening.id, seats(show, 1), "key-1")).booking

    assert booking.payment is not None
    assert booking.payment.status is PaymentStatus.REQUIRES_PAYMENT
    assert booking.payment.provider == FakePayments.provider
    assert again.payment == booking.payment
    assert list(world.payments.intents) == [booking.payment.intent_id]
    assert row_of(world, booking).payment == booking.payment


async def test_a_provider_failure_abandons_the_booking_and_frees_its_seats(
    world: FakeWorld, paid: BookingService, show: ScreeningSnapshot
) -> None:
    world.payments.down = True
    with pytest.raises(PaymentProviderUnavailable):
        await paid.book(ALICE, show.screening.id, seats(show, 1))

    (abandoned,) = world.tables.bookings.values()
    assert abandoned.status is BookingStatus.CANCELLED
    assert abandoned.cancel_reason == CancelReason.PAYMENT_UNAVAILABLE.value
    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) is None
    world.payments.down = False
    assert (await paid.book(BOB, show.screening.id, seats(show, 1))).booking.payment is not None
    world.tables.assert_consistent()


async def test_an_abandoned_booking_is_reported_as_cancelled(
    world: FakeWorld, paid: BookingService, show: ScreeningSnapshot
) -> None:
    world.payments.down = True
    with pytest.raises(PaymentProviderUnavailable):
        await paid.book(ALICE, show.screening.id, seats(show, 1))
    assert world.events.names() == ["created", "cancelled"]


async def test_a_replay_creates_the_intent_its_first_request_never_did(
    world: FakeWorld, svc: BookingService, paid: BookingService, show: ScreeningSnapshot
) -> None:
    # The first request committed and died before asking the provider (no gateway here).
    first = (await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")).booking
    assert first.payment is None

    again = (await paid.book(ALICE, show.screening.id, seats(show, 1), "key-1")).booking

    assert again.payment is not None
    assert row_of(world, first).payment == again.payment


async def test_a_replay_the_provider_fails_leaves_the_booking_to_its_owner(
    world: FakeWorld, svc: BookingService, paid: BookingService, show: ScreeningSnapshot
) -> None:
    first = (await svc.book(ALICE, show.screening.id, seats(show, 1), "key-1")).booking
    world.payments.down = True

    with pytest.raises(PaymentProviderUnavailable):
        await paid.book(ALICE, show.screening.id, seats(show, 1), "key-1")

    assert row_of(world, first).status is BookingStatus.PENDING
    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) == first.hold_token


async def test_a_booking_cancelled_while_the_provider_answers_gets_its_intent_cancelled(
    world: FakeWorld, show: ScreeningSnapshot
) -> None:
    svc: BookingService

    class SlowProvider(FakePayments):
        async def create_intent(self, booking: Booking) -> object:  # type: ignore[override]
            await svc.cancel(booking.user_id, booking.id)  # the customer gave up meanwhile
            return await super().create_intent(booking)

    world.payments = SlowProvider()
    svc = world.service(paid=True)

    result = await svc.book(ALICE, show.screening.id, seats(show, 1))

    assert result.booking.status is BookingStatus.CANCELLED
    assert result.booking.payment is not None
    assert world.follow_ups.cancelled_payments == [result.booking.id]


# --- cancel and expire --------------------------------------------------------------------


async def test_cancel_frees_the_seats_and_the_intent(
    world: FakeWorld, paid: BookingService, show: ScreeningSnapshot
) -> None:
    booking = (await paid.book(ALICE, show.screening.id, seats(show, 1, 2))).booking

    cancelled = await paid.cancel(ALICE, booking.id)
    again = await paid.cancel(ALICE, booking.id)

    assert cancelled.status is BookingStatus.CANCELLED
    assert cancelled.cancel_reason == CancelReason.USER.value
    assert again == cancelled  # cancelling twice is harmless
    assert all(world.holds.holder(show.screening.id, s) is None for s in booking.seat_ids)
    assert world.follow_ups.cancelled_payments == [booking.id]
    assert world.events.calls[-1] == ("cancelled", (booking.id, CancelReason.USER.value))
    assert (await paid.book(BOB, show.screening.id, seats(show, 1))).booking.id != booking.id


async def test_cancel_refuses_others_bookings_and_confirmed_ones(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    booking = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    with pytest.raises(BookingNotFound):
        await svc.cancel(BOB, booking.id)
    with pytest.raises(BookingNotFound):
        await svc.cancel(ALICE, 999)
    world.tables.confirm(booking.id)
    with pytest.raises(BookingNotCancellable):
        await svc.cancel(ALICE, booking.id)


async def test_cancel_racing_a_payment_reports_the_booking_as_it_is(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    booking = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    end_booking = world.store.end_booking

    async def paid_just_before(*args: object) -> Booking | None:
        world.tables.confirm(booking.id)  # the webhook committed first
        return await end_booking(*args)  # type: ignore[arg-type]

    world.store.end_booking = paid_just_before  # type: ignore[method-assign, assignment]
    with pytest.raises(BookingNotCancellable):
        await svc.cancel(ALICE, booking.id)
    assert row_of(world, booking).status is BookingStatus.CONFIRMED


async def test_expire_ends_only_a_due_booking_once(
    world: FakeWorld, paid: BookingService, show: ScreeningSnapshot
) -> None:
    booking = (await paid.book(ALICE, show.screening.id, seats(show, 1))).booking
    assert await paid.expire(booking.id) is None  # not due yet
    world.clock.advance(TTL)

    ended = await paid.expire(booking.id)

    assert ended is not None and ended.status is BookingStatus.CANCELLED
    assert ended.cancel_reason == CancelReason.EXPIRED.value
    assert await paid.expire(booking.id) is None
    assert await paid.expire(999) is None
    assert world.events.names().count("expired") == 1
    assert world.holds.holder(show.screening.id, seats(show, 1)[0]) is None
    assert world.follow_ups.cancelled_payments == [booking.id]


async def test_expire_leaves_a_confirmed_booking_alone(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    booking = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    world.tables.confirm(booking.id)
    world.clock.advance(TTL)
    assert await svc.expire(booking.id) is None
    assert await svc.expire_overdue(10) == []


async def test_expire_overdue_ends_due_bookings_in_batches(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    early = [(await svc.book(ALICE, show.screening.id, [s])).booking for s in seats(show, 1, 2, 3)]
    world.clock.advance(TTL / 2)
    late = (await svc.book(BOB, show.screening.id, seats(show, 4))).booking
    world.clock.advance(TTL / 2)

    first = await svc.expire_overdue(2)
    rest = await svc.expire_overdue(2)

    assert len(first) == 2 and len(rest) == 1
    assert sorted(b.id for b in first + rest) == [b.id for b in early]
    assert await svc.expire_overdue(2) == []
    assert row_of(world, late).status is BookingStatus.PENDING
    assert world.events.names().count("expired") == 3
    world.tables.assert_consistent()


# --- reading ------------------------------------------------------------------------------


async def test_the_seat_map_shows_held_sold_and_lapsed_seats(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    lapsing = (await svc.book(ALICE, show.screening.id, seats(show, 3))).booking
    world.clock.advance(TTL / 2)
    held = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    sold = (await svc.book(BOB, show.screening.id, seats(show, 2))).booking
    world.tables.confirm(sold.id)
    world.clock.advance(TTL / 2)

    seat_map = await svc.seat_map(show.screening.id)

    status = {entry.id: entry.status for entry in seat_map.seats}
    assert status[held.seat_ids[0]] is SeatStatus.LOCKED
    assert status[sold.seat_ids[0]] is SeatStatus.SOLD
    assert status[lapsing.seat_ids[0]] is SeatStatus.AVAILABLE  # past its deadline
    assert seat_map.counts() == {SeatStatus.AVAILABLE: 8, SeatStatus.LOCKED: 1, SeatStatus.SOLD: 1}
    assert [entry.seat for entry in seat_map.seats] == list(range(1, 11))


async def test_a_user_reads_only_their_own_bookings(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    older = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    world.clock.advance(1)
    newer = (await svc.book(ALICE, show.screening.id, seats(show, 2))).booking
    bobs = (await svc.book(BOB, show.screening.id, seats(show, 3))).booking

    assert [b.id for b in await svc.bookings_of(ALICE)] == [newer.id, older.id]
    assert [b.id for b in await svc.bookings_of(ALICE, limit=1, offset=1)] == [older.id]
    assert await svc.booking_for(ALICE, older.id) == older
    with pytest.raises(BookingNotFound):
        await svc.booking_for(ALICE, bobs.id)
    assert await svc.booking_by_reference(ALICE, older.reference.lower()) == older
    assert await svc.booking_by_reference(ALICE, bobs.reference) is None


# --- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("redis", ["up", "down", "flushed"])
async def test_a_hundred_buyers_of_one_seat_get_one_booking(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot, redis: str
) -> None:
    world.holds.reachable = redis != "down"
    if redis == "flushed":  # Redis forgets every hold after every tenth claim of the burst
        claim, claims = world.holds.claim, itertools.count(1)

        async def forgetful_claim(*args: Any) -> HoldClaim:
            answer = await claim(*args)
            if next(claims) % 10 == 0:
                world.holds.flush()
            return answer

        world.holds.claim = forgetful_claim  # type: ignore[method-assign, assignment]

    outcomes = await asyncio.gather(
        *(svc.book(user, show.screening.id, seats(show, 5)) for user in range(100)),
        return_exceptions=True,
    )

    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1
    assert len(lost) == 99 and all(isinstance(o, SeatsUnavailable) for o in lost)
    caught_by_postgres = world.events.names().count("conflicted_postgres")
    assert caught_by_postgres == {"up": 0, "down": 99, "flushed": 9}[redis]
    live = [r for r in world.tables.reservations if r.status is not BookingStatus.CANCELLED]
    assert [(r.booking_id, r.seat_id) for r in live] == [(won[0].booking.id, seats(show, 5)[0])]
    world.tables.assert_consistent()


async def test_overlapping_selections_never_share_a_seat(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    ids = [s.id for s in show.seats]
    selections = [ids[i : i + 3] for i in range(len(ids) - 2)] * 5
    world.holds.reachable = False  # PostgreSQL alone decides

    outcomes = await asyncio.gather(
        *(svc.book(user, show.screening.id, pick) for user, pick in enumerate(selections)),
        return_exceptions=True,
    )

    assert all(isinstance(o, SeatsUnavailable) for o in outcomes if isinstance(o, BaseException))
    assert any(not isinstance(o, BaseException) for o in outcomes)
    world.tables.assert_consistent()


# --- the fakes keep the real parts' contracts ---------------------------------------------


@pytest.fixture(params=["fake", "redis"])
async def holds(request: pytest.FixtureRequest, world: FakeWorld) -> AsyncIterator[SeatHolds]:
    """The same scenarios against FakeSeatHolds and the real RedisSeatHolds (own key prefix)."""
    if request.param == "fake":
        yield world.holds
        return
    import secrets

    import redis.asyncio as aioredis

    from cinema.holds import RedisSeatHolds

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL} for the contract check: {exc!r}")
    prefix = f"cinematest:unit:{secrets.token_hex(4)}:"
    try:
        yield RedisSeatHolds(client, prefix=prefix, grace_seconds=5)
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_holds_claim_all_or_nothing(holds: SeatHolds) -> None:
    assert (await holds.claim(7, [1, 2], "a", 60)).claimed
    assert (await holds.claim(7, [1, 2], "a", 60)).claimed  # its own keys are no conflict
    refused = await holds.claim(7, [2, 3], "b", 60)
    assert (refused.claimed, refused.taken, refused.reachable) == (False, (2,), True)
    assert (await holds.claim(8, [2], "b", 60)).claimed  # another screening, another key
    assert (await holds.claim(7, [3], "b", 60)).claimed  # the refused claim took nothing


async def test_holds_release_only_their_own_keys(holds: SeatHolds) -> None:
    await holds.claim(7, [1], "a", 60)
    await holds.release(7, [1], "b")
    assert (await holds.claim(7, [1], "b", 60)).taken == (1,)
    await holds.release(7, [1], "a")
    assert (await holds.claim(7, [1], "b", 60)).claimed


async def test_sold_seats_stay_sold(holds: SeatHolds) -> None:
    await holds.claim(7, [1], "a", 60)
    await holds.mark_sold(7, [1, 2])
    await holds.release(7, [1], "a")
    assert (await holds.claim(7, [1, 2], "a", 60)).taken == (1, 2)


@pytest.mark.parametrize(
    ("clash", "error"),
    [
        ({"seat_ids": (2,)}, SeatsUnavailable),  # a live hold
        ({"seat_ids": (999_999,)}, SeatsUnavailable),  # no such seat row to lock
        ({"reference": "TAKEN"}, ReferenceTaken),
        ({"idempotency_key": "k"}, IdempotencyKeyTaken),
    ],
)
async def test_the_fake_store_refuses_what_postgres_refuses_and_rolls_back(
    world: FakeWorld,
    svc: BookingService,
    show: ScreeningSnapshot,
    clash: dict[str, object],
    error: type[Exception],
) -> None:
    lapsed = (await svc.book(ALICE, show.screening.id, seats(show, 1))).booking
    world.clock.advance(TTL)  # seat 1's hold lapsed: a create ends it, unless it fails
    live = (await svc.book(BOB, show.screening.id, seats(show, 2), "k")).booking
    world.tables.bookings[live.id].reference = "TAKEN"
    if "seat_ids" in clash and clash["seat_ids"] == (2,):
        clash = {"seat_ids": tuple(seats(show, 1, 2))}
    new = NewBooking(
        reference="NEWREF23",
        user_id=BOB,
        screening_id=show.screening.id,
        hall_id=show.screening.hall_id,
        seat_ids=tuple(seats(show, 1)),
        amount=0,
        currency="EUR",
        hold_ttl_seconds=TTL,
        hold_token="t",
        idempotency_key=None,
    )

    with pytest.raises(error):
        await world.store.create_booking(replace(new, **clash))  # type: ignore[arg-type]

    assert row_of(world, lapsed).status is BookingStatus.PENDING  # rolled back
    assert len(world.tables.bookings) == 2
    created = await world.store.create_booking(new)  # the same create, without the clash
    assert row_of(world, lapsed).status is BookingStatus.CANCELLED
    assert created.seat_ids == tuple(seats(show, 1))
    world.tables.assert_consistent()


@pytest.fixture(autouse=True)
def _no_database_fixtures(request: pytest.FixtureRequest) -> Iterator[None]:
    """These tests must run without PostgreSQL: none may pull in conftest's database."""
    yield
    assert "database_url" not in request.fixturenames
