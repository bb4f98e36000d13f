"""PaymentSettlement and PaymentCanceller on in-memory fakes (tests/fakes.py): webhooks that
confirm, cancel, arrive twice, late or out of order, and intents cancelled after the fact,
without PostgreSQL, Redis or Stripe. test_webhooks.py and test_payments.py test the same over
HTTP against the real parts and localstripe."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from cinema.booking.errors import InvalidWebhook, PaymentProviderUnavailable, PaymentsNotConfigured
from cinema.booking.model import (
    Booking,
    BookingStatus,
    CancelReason,
    PaymentEventKind,
    PaymentStatus,
    SettlementOutcome,
)
from cinema.booking.service import BookingService
from cinema.booking.settlement import PaymentSettlement
from cinema.catalogue.model import ScreeningSnapshot
from tests.fakes import SOLD, FakeWorld

ALICE, BOB = 1, 2
TTL = 900
OK, FAILED, CANCELED = (
    PaymentEventKind.SUCCEEDED.value,
    PaymentEventKind.FAILED.value,
    PaymentEventKind.CANCELED.value,
)
_event_ids = itertools.count(1)


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
def svc(world: FakeWorld) -> BookingService:
    return world.service(paid=True)


@pytest.fixture
def settlement(world: FakeWorld) -> PaymentSettlement:
    return world.settlement()


@pytest.fixture
def show(world: FakeWorld) -> ScreeningSnapshot:
    return world.catalogue.add_screening()


@pytest.fixture
async def booking(svc: BookingService, show: ScreeningSnapshot) -> Booking:
    return (await svc.book(ALICE, show.screening.id, [show.seats[0].id, show.seats[1].id])).booking


def intent_of(booking: Booking) -> str:
    assert booking.payment is not None
    return booking.payment.intent_id


async def deliver(
    world: FakeWorld, settlement: PaymentSettlement, kind: str, booking: Booking, event_id: str = ""
) -> SettlementOutcome:
    """The provider delivers one signed event about the booking's intent."""
    payload, signature = world.payments.event(
        kind, intent_of(booking), event_id or f"evt_{next(_event_ids)}"
    )
    return await settlement.handle_webhook(payload, signature)


def stored(world: FakeWorld, booking: Booking) -> Booking:
    row = world.tables.booking(booking.id)
    assert row is not None
    return row


def payment_status(world: FakeWorld, booking: Booking) -> PaymentStatus:
    payment = stored(world, booking).payment
    assert payment is not None
    return payment.status


async def test_a_success_confirms_sells_the_seats_and_sends_the_ticket(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    assert await deliver(world, settlement, OK, booking) is SettlementOutcome.CONFIRMED

    assert stored(world, booking).status is BookingStatus.CONFIRMED
    assert payment_status(world, booking) is PaymentStatus.SUCCEEDED
    assert all(world.holds.holder(booking.screening_id, s) == SOLD for s in booking.seat_ids)
    assert world.follow_ups.tickets == [booking.id]
    assert world.events.calls[-1] == ("confirmed", booking.id)
    world.tables.assert_consistent()


async def test_a_duplicate_delivery_changes_nothing(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    first = await deliver(world, settlement, OK, booking, "evt_once")
    again = await deliver(world, settlement, OK, booking, "evt_once")

    assert (first, again) == (SettlementOutcome.CONFIRMED, SettlementOutcome.DUPLICATE)
    assert world.follow_ups.tickets == [booking.id]
    assert world.events.names().count("confirmed") == 1


async def test_ten_simultaneous_deliveries_confirm_once(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    outcomes = await asyncio.gather(
        *(deliver(world, settlement, OK, booking, "evt_burst") for _ in range(10))
    )
    assert sorted(outcomes) == sorted(
        [SettlementOutcome.CONFIRMED] + [SettlementOutcome.DUPLICATE] * 9
    )
    assert world.follow_ups.tickets == [booking.id]


async def test_a_failure_cancels_frees_the_seats_and_closes_the_intent(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    assert await deliver(world, settlement, FAILED, booking) is SettlementOutcome.CANCELLED

    ended = stored(world, booking)
    assert (ended.status, ended.cancel_reason) == (
        BookingStatus.CANCELLED,
        CancelReason.PAYMENT_FAILED.value,
    )
    assert payment_status(world, booking) is PaymentStatus.FAILED
    assert all(world.holds.holder(booking.screening_id, s) is None for s in booking.seat_ids)
    assert world.follow_ups.cancelled_payments == [booking.id]
    world.tables.assert_consistent()


async def test_a_canceled_intent_cancels_without_cancelling_it_again(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    assert await deliver(world, settlement, CANCELED, booking) is SettlementOutcome.CANCELLED
    assert stored(world, booking).cancel_reason == CancelReason.PAYMENT_CANCELED.value
    assert payment_status(world, booking) is PaymentStatus.CANCELED
    assert world.follow_ups.cancelled_payments == []


async def test_a_failure_after_the_success_is_ignored(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    await deliver(world, settlement, OK, booking)
    assert await deliver(world, settlement, FAILED, booking) is SettlementOutcome.IGNORED
    assert stored(world, booking).status is BookingStatus.CONFIRMED
    assert world.follow_ups.cancelled_payments == []


async def test_a_late_success_takes_the_free_seats_back(
    world: FakeWorld, svc: BookingService, settlement: PaymentSettlement, booking: Booking
) -> None:
    world.clock.advance(TTL)
    await svc.expire(booking.id)

    assert await deliver(world, settlement, OK, booking) is SettlementOutcome.CONFIRMED_LATE

    assert stored(world, booking).status is BookingStatus.CONFIRMED
    assert stored(world, booking).cancel_reason is None
    assert world.follow_ups.tickets == [booking.id]
    world.tables.assert_consistent()


async def test_a_late_success_ends_a_lapsed_hold_on_its_seats(
    world: FakeWorld, svc: BookingService, settlement: PaymentSettlement, booking: Booking
) -> None:
    world.clock.advance(TTL)
    other = (await svc.book(BOB, booking.screening_id, [booking.seat_ids[0]])).booking
    world.clock.advance(TTL)  # BOB's hold has lapsed too, but nobody has ended it yet

    assert await deliver(world, settlement, OK, booking) is SettlementOutcome.CONFIRMED_LATE

    assert stored(world, other).status is BookingStatus.CANCELLED
    assert stored(world, other).cancel_reason == CancelReason.EXPIRED.value
    world.tables.assert_consistent()


async def test_a_late_success_on_taken_seats_is_refunded_once(
    world: FakeWorld, svc: BookingService, settlement: PaymentSettlement, booking: Booking
) -> None:
    world.clock.advance(TTL)
    other = (await svc.book(BOB, booking.screening_id, [booking.seat_ids[1]])).booking

    assert await deliver(world, settlement, OK, booking, "evt_late") is (
        SettlementOutcome.REFUND_NEEDED
    )
    assert await deliver(world, settlement, OK, booking, "evt_late") is (
        SettlementOutcome.DUPLICATE
    )

    assert stored(world, booking).status is BookingStatus.CANCELLED
    assert payment_status(world, booking) is PaymentStatus.REFUNDED
    assert world.tables.bookings[booking.id].refund_id == world.payments.refunds[booking.id]
    assert stored(world, other).status is BookingStatus.PENDING
    assert world.follow_ups.tickets == []
    world.tables.assert_consistent()


async def test_a_refund_the_provider_refused_is_retried_by_the_redelivery(
    world: FakeWorld, svc: BookingService, settlement: PaymentSettlement, booking: Booking
) -> None:
    world.clock.advance(TTL)
    await svc.book(BOB, booking.screening_id, [booking.seat_ids[0]])
    world.payments.down = True

    with pytest.raises(PaymentProviderUnavailable):
        await deliver(world, settlement, OK, booking, "evt_late")
    assert payment_status(world, booking) is PaymentStatus.REFUND_PENDING

    world.payments.down = False
    assert await deliver(world, settlement, OK, booking, "evt_late") is (
        SettlementOutcome.DUPLICATE
    )
    assert payment_status(world, booking) is PaymentStatus.REFUNDED


async def test_redis_down_does_not_stop_a_confirmation(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    world.holds.reachable = False
    assert await deliver(world, settlement, OK, booking) is SettlementOutcome.CONFIRMED
    assert world.follow_ups.tickets == [booking.id]


async def test_events_of_no_booking_and_of_no_interest(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    payload, signature = world.payments.event(OK, "pi_nobody", "evt_stray")
    assert await settlement.handle_webhook(payload, signature) is SettlementOutcome.UNKNOWN_INTENT
    assert await deliver(world, settlement, "customer.created", booking) is (
        SettlementOutcome.IGNORED
    )
    assert "evt_stray" in world.tables.payment_events
    assert len(world.tables.payment_events) == 1  # an ignored type is not even recorded
    assert stored(world, booking).status is BookingStatus.PENDING


async def test_unsigned_events_and_missing_payments_are_refused(
    world: FakeWorld, settlement: PaymentSettlement, booking: Booking
) -> None:
    payload, signature = world.payments.event(OK, intent_of(booking), "evt_forged")
    for forged in (None, "0" * 64):
        with pytest.raises(InvalidWebhook):
            await settlement.handle_webhook(payload, forged)
    with pytest.raises(InvalidWebhook):
        await settlement.handle_webhook(payload + b" ", signature)
    with pytest.raises(PaymentsNotConfigured):
        await world.settlement(paid=False).handle_webhook(payload, signature)
    assert world.tables.payment_events == {}
    assert stored(world, booking).status is BookingStatus.PENDING


# --- PaymentCanceller ---------------------------------------------------------------------


async def test_the_canceller_closes_the_intent_of_a_cancelled_booking(
    world: FakeWorld, svc: BookingService, booking: Booking
) -> None:
    canceller = world.canceller()
    assert not await canceller.cancel(booking.id)  # still PENDING: not for the canceller
    await svc.cancel(ALICE, booking.id)

    assert await canceller.cancel(booking.id)
    assert payment_status(world, booking) is PaymentStatus.CANCELED
    assert not await canceller.cancel(booking.id)  # done once


async def test_the_canceller_settles_an_intent_that_was_paid_meanwhile(
    world: FakeWorld, svc: BookingService, booking: Booking
) -> None:
    await svc.cancel(ALICE, booking.id)
    world.payments.pay(intent_of(booking))

    assert not await world.canceller().cancel(booking.id)  # nothing left to cancel
    assert payment_status(world, booking) is PaymentStatus.CANCELED


async def test_the_sweep_closes_every_open_intent_and_stops_when_the_provider_is_down(
    world: FakeWorld, svc: BookingService, show: ScreeningSnapshot
) -> None:
    made = [(await svc.book(ALICE, show.screening.id, [s.id])).booking for s in show.seats[:4]]
    for b in made:
        await svc.cancel(ALICE, b.id)
    canceller = world.canceller()

    world.payments.down = True
    assert await canceller.sweep() == 0
    calls_while_down = world.payments.calls
    assert await canceller.sweep() == 0
    assert world.payments.calls == calls_while_down + 1  # stopped at the first retryable error

    world.payments.retryable = False  # a refusal: skip that booking, go on with the rest
    assert await canceller.sweep() == 0
    assert world.payments.calls == calls_while_down + 1 + len(made)

    world.payments.down = False
    assert await canceller.sweep(limit=3) == 3
    assert await canceller.sweep() == 1
    assert await world.store.ended_with_open_intent(10) == []


@pytest.fixture(autouse=True)
def _no_database_fixtures(request: pytest.FixtureRequest) -> Iterator[None]:
    """These tests must run without PostgreSQL: none may pull in conftest's database."""
    yield
    assert "database_url" not in request.fixturenames
