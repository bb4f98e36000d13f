"""Booking rules and money, as plain functions."""

from datetime import UTC, datetime, timedelta

import pytest

from cinema.booking import rules
from cinema.booking.errors import InvalidSelection, ScreeningStarted, SeatsNotInHall
from cinema.booking.identifiers import REFERENCE_LENGTH, hold_token, new_reference
from cinema.booking.model import BookingStatus, LiveReservation, SeatStatus
from cinema.catalogue.model import Screening, ScreeningSnapshot, Seat
from cinema.money import MoneyError, format_minor, to_minor

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def snapshot(starts_at: datetime = NOW + timedelta(hours=1)) -> ScreeningSnapshot:
    seats = (
        Seat(10, "A", 0, 1, "standard"),
        Seat(11, "A", 0, 2, "vip"),
        Seat(12, "B", 1, 1, "standard"),
    )
    screening = Screening(1, 1, 1, starts_at, {"standard": 1250, "vip": 2000}, "usd")
    return ScreeningSnapshot.of(screening, seats)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (BookingStatus.PENDING, BookingStatus.CONFIRMED, True),
        (BookingStatus.PENDING, BookingStatus.CANCELLED, True),
        (BookingStatus.CONFIRMED, BookingStatus.CANCELLED, False),
        (BookingStatus.CONFIRMED, BookingStatus.PENDING, False),
        (BookingStatus.CANCELLED, BookingStatus.CONFIRMED, False),
        (BookingStatus.CANCELLED, BookingStatus.PENDING, False),
        (BookingStatus.PENDING, BookingStatus.PENDING, False),
    ],
)
def test_states_only_move_forward(current, target, allowed):
    assert rules.can_transition(current, target) is allowed


def test_selection_is_sorted_for_the_lock_order():
    assert rules.normalize_selection([12, 3, 7]) == (3, 7, 12)


@pytest.mark.parametrize(
    ("seat_ids", "message"),
    [([], "at least one"), (list(range(1, 12)), "at most 10"), ([1, 2, 1], "more than once")],
)
def test_bad_selections_are_refused(seat_ids, message):
    with pytest.raises(InvalidSelection, match=message):
        rules.normalize_selection(seat_ids)


def test_ten_seats_is_the_limit_not_beyond():
    assert len(rules.normalize_selection(range(1, 11))) == 10


def test_started_screening_is_not_bookable():
    with pytest.raises(ScreeningStarted):
        rules.ensure_bookable(snapshot(starts_at=NOW), (10,), NOW)


def test_seats_of_another_hall_are_named():
    with pytest.raises(SeatsNotInHall) as err:
        rules.ensure_bookable(snapshot(), (10, 99, 100), NOW)
    assert err.value.seat_ids == [99, 100]


def test_price_sums_categories():
    assert rules.price(snapshot(), (10, 11, 12)) == 1250 + 2000 + 1250


@pytest.mark.parametrize(
    ("reservation", "status"),
    [
        (None, SeatStatus.AVAILABLE),
        (LiveReservation(1, BookingStatus.PENDING, False), SeatStatus.LOCKED),
        (LiveReservation(1, BookingStatus.PENDING, True), SeatStatus.AVAILABLE),
        (LiveReservation(1, BookingStatus.CONFIRMED, False), SeatStatus.SOLD),
        (LiveReservation(1, BookingStatus.CONFIRMED, True), SeatStatus.SOLD),
    ],
)
def test_seat_status(reservation, status):
    assert rules.seat_status(reservation) is status


def test_references_are_8_unambiguous_characters():
    refs = {new_reference() for _ in range(500)}
    assert len(refs) == 500
    for ref in refs:
        assert len(ref) == REFERENCE_LENGTH
        assert not set(ref) & set("01OI")


def test_hold_token_is_stable_per_idempotency_key_and_random_otherwise():
    assert hold_token(1, "k") == hold_token(1, "k")
    assert hold_token(1, "k") != hold_token(2, "k")
    assert hold_token(1, None) != hold_token(1, None)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("12.50", "usd", 1250), ("0", "eur", 0), ("1500", "jpy", 1500), (7, "usd", 700)],
)
def test_to_minor(amount, currency, minor):
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("-1", "usd"),
        ("1.005", "usd"),
        ("1.5", "jpy"),
        ("NaN", "usd"),
        ("abc", "usd"),
        ("1e9", "usd"),
    ],
)
def test_to_minor_refuses(amount, currency):
    with pytest.raises(MoneyError):
        to_minor(amount, currency)


def test_format_minor():
    assert format_minor(1250, "usd") == "12.50"
    assert format_minor(5, "usd") == "0.05"
    assert format_minor(1500, "jpy") == "1500"
