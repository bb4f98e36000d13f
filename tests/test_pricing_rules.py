"""The price computation with exact amounts, in 0-, 2- and 3-decimal currencies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cinema.pricing import rules
from cinema.pricing.errors import PromoCodeInvalid, TicketTypeLimit, UnknownTicketType
from cinema.pricing.model import (
    NO_FEES,
    Fees,
    PromoCode,
    PromoKind,
    TicketLine,
    TicketRequest,
    TicketType,
    Totals,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def promo(kind: PromoKind, value: str, **kw: object) -> PromoCode:
    fields: dict[str, object] = {
        "id": 1,
        "code": "WELCOME10",
        "kind": kind,
        "value": Decimal(value),
        "max_uses": 100,
        "max_uses_per_customer": None,
        "valid_from": None,
        "valid_until": None,
        "screening_ids": None,
        "ticket_types": None,
        "active": True,
        "created_at": NOW,
    }
    fields.update(kw)
    return PromoCode(**fields)  # type: ignore[arg-type]


def types(discount: int, student: dict[str, int]) -> tuple[TicketType, ...]:
    return (
        TicketType("adult", "Adult"),
        TicketType("child", "Child", discount=discount, max_per_booking=2),
        TicketType("student", "Student", prices=student),
    )


def lines(
    ticket_types: tuple[TicketType, ...], prices: dict[str, int], wanted: list[tuple[str, str]]
) -> tuple[TicketLine, ...]:
    category = {i: c for i, (c, _) in enumerate(wanted, start=1)}
    requests = [TicketRequest(i, t) for i, (_, t) in enumerate(wanted, start=1)]
    return rules.ticket_lines(ticket_types, prices, requests, lambda r: category[r.seat_id or 0])


EUR_PRICES = {"standard": 1000, "vip": 1500}
EUR_TYPES = types(300, {"standard": 800, "vip": 1200})
EUR_FEES = Fees(per_ticket=50, percent=Decimal("3"))


def test_eur_lines_fees_and_percent_promo() -> None:
    sold = lines(
        EUR_TYPES, EUR_PRICES, [("standard", "adult"), ("vip", "child"), ("vip", "student")]
    )
    assert [(t.ticket_type, t.category, t.price) for t in sold] == [
        ("adult", "standard", 1000),
        ("child", "vip", 1200),
        ("student", "vip", 1200),
    ]
    # 34.00 + 3 x 0.50 + 3% of 34.00 (1.02) = 36.52
    assert rules.totals(sold, EUR_FEES, "eur") == Totals(3400, 0, 252, 3652)
    # 10% off: 3.40; the percentage fee stays on the subtotal
    assert rules.totals(sold, EUR_FEES, "eur", promo(PromoKind.PERCENT, "10")) == Totals(
        3400, 340, 252, 3312
    )


def test_eur_rounding_happens_once_half_up() -> None:
    sold = (TicketLine(1, "standard", "adult", 1999),)
    # 19.99 + 0.50 + 0.5997 = 21.0897 -> 21.09
    assert rules.totals(sold, EUR_FEES, "eur") == Totals(1999, 0, 110, 2109)
    # 12.5% of 19.99 = 2.49875: shown 2.50; total 19.99 - 2.49875 + 1.0997 = 18.59095 -> 18.59
    got = rules.totals(sold, EUR_FEES, "eur", promo(PromoKind.PERCENT, "12.5"))
    assert got == Totals(1999, 250, 110, 1859)
    assert got.subtotal - got.discount + got.fees == got.total


def test_jpy_zero_decimals() -> None:
    prices = {"standard": 1800, "vip": 2500}
    sold = lines(
        types(500, {"standard": 1500, "vip": 2000}),
        prices,
        [("standard", "adult"), ("standard", "child")],
    )
    fees = Fees(percent=Decimal("3"))
    assert rules.totals(sold, fees, "jpy") == Totals(3100, 0, 93, 3193)
    assert rules.totals(sold, fees, "jpy", promo(PromoKind.PERCENT, "15")) == Totals(
        3100, 465, 93, 2728
    )
    one = (TicketLine(1, "standard", "adult", 1999),)
    assert rules.totals(one, fees, "jpy") == Totals(1999, 0, 60, 2059)  # 59.97 yen -> 60


def test_kwd_three_decimals_round_to_what_stripe_can_charge() -> None:
    sold = (TicketLine(1, "standard", "adult", 12500),)  # 12.500 KWD
    assert rules.totals(sold, NO_FEES, "kwd") == Totals(12500, 0, 0, 12500)
    # 3% = 0.375: 12.875, charged in steps of 0.010 -> 12.880
    assert rules.totals(sold, Fees(percent=Decimal("3")), "kwd") == Totals(12500, 0, 380, 12880)
    two = (*sold, TicketLine(2, "standard", "child", 9750))
    got = rules.totals(two, Fees(per_ticket=250), "kwd", promo(PromoKind.FIXED, "1.5"))
    assert got == Totals(22250, 1500, 500, 21250)


def test_fixed_discount_larger_than_the_price_floors_at_zero() -> None:
    sold = (TicketLine(1, "standard", "adult", 1000),)
    assert rules.totals(sold, NO_FEES, "eur", promo(PromoKind.FIXED, "20.00")) == Totals(
        1000, 1000, 0, 0
    )
    # the fees are still charged
    assert rules.totals(sold, EUR_FEES, "eur", promo(PromoKind.FIXED, "20.00")) == Totals(
        1000, 1000, 80, 80
    )


def test_promo_restricted_to_ticket_types_discounts_only_those() -> None:
    sold = lines(EUR_TYPES, EUR_PRICES, [("standard", "adult"), ("standard", "child")])
    only_child = promo(PromoKind.PERCENT, "50", ticket_types=frozenset({"child"}))
    assert rules.totals(sold, NO_FEES, "eur", only_child) == Totals(1700, 350, 0, 1350)
    rules.check_promo(only_child, 1, sold, NOW)
    adults = lines(EUR_TYPES, EUR_PRICES, [("standard", "adult")])
    with pytest.raises(PromoCodeInvalid) as caught:
        rules.check_promo(only_child, 1, adults, NOW)
    assert caught.value.reason == "wrong_ticket_type"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"active": False}, "deactivated"),
        ({"valid_from": NOW + timedelta(seconds=1)}, "not_yet_valid"),
        ({"valid_until": NOW}, "expired"),
        ({"screening_ids": frozenset({2})}, "wrong_screening"),
    ],
)
def test_promo_reasons(changes: dict[str, object], reason: str) -> None:
    sold = (TicketLine(1, "standard", "adult", 1000),)
    with pytest.raises(PromoCodeInvalid) as caught:
        rules.check_promo(promo(PromoKind.PERCENT, "10", **changes), 1, sold, NOW)
    assert caught.value.reason == reason


def test_ticket_type_discount_never_goes_below_zero() -> None:
    cheap = types(300, {"standard": 800, "vip": 1200})
    sold = lines(cheap, {"standard": 200, "vip": 1500}, [("standard", "child")])
    assert sold[0].price == 0


def test_unknown_type_and_max_per_booking() -> None:
    with pytest.raises(UnknownTicketType):
        lines(EUR_TYPES, EUR_PRICES, [("standard", "senior")])
    with pytest.raises(TicketTypeLimit):
        lines(EUR_TYPES, EUR_PRICES, [("standard", "child")] * 3)
    # no type named: the first (default) type
    assert lines(EUR_TYPES, EUR_PRICES, [("vip", None)])[0].ticket_type == "adult"  # type: ignore[list-item]
