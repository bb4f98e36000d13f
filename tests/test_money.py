"""ISO 4217 exponents from the iso4217 table, and the few places where Stripe differs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from iso4217 import Currency

from cinema import money
from cinema.money import MoneyError

# Stripe's published lists (docs.stripe.com/currencies, "Zero-decimal" and "Three-decimal").
STRIPE_ZERO_DECIMAL_DOCS = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
}  # fmt: skip
STRIPE_THREE_DECIMAL_DOCS = {"bhd", "jod", "kwd", "omr", "tnd"}


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.500", "kwd", 12500),  # was 1250: ten times too little
        ("12.5", "KWD", 12500),
        ("0.125", "bhd", 125),
        ("1250", "jpy", 1250),
        ("12.50", "eur", 1250),
        ("7", "usd", 700),
        ("100", "isk", 100),
    ],
)
def test_to_minor_uses_the_iso_exponent(amount: str, currency: str, minor: int) -> None:
    assert money.to_minor(amount, currency) == minor
    assert money.to_minor(Decimal(money.format_minor(minor, currency)), currency) == minor


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(12500, "kwd", "12.500"), (1250, "jpy", "1250"), (1250, "eur", "12.50"), (5, "eur", "0.05")],
)
def test_format_minor(minor: int, currency: str, text: str) -> None:
    assert money.format_minor(minor, currency) == text


@pytest.mark.parametrize("amount", ["1.5", "0.001"])
def test_sub_minor_precision_is_refused(amount: str) -> None:
    with pytest.raises(MoneyError):
        money.to_minor(amount, "jpy" if amount == "1.5" else "eur")


@pytest.mark.parametrize("code", ["xyz", "xxx", "xau", "usdd", ""])
def test_unknown_and_unpriced_codes_are_refused(code: str) -> None:
    assert not money.is_known(code)
    with pytest.raises(MoneyError):
        money.to_minor("1", code)


def test_stripe_zero_decimal_list_against_iso() -> None:
    """Every Stripe zero-decimal currency is zero-decimal in ISO 4217 but MGA (ISO: 2), which
    is why the table alone cannot decide what Stripe is sent; and every ISO zero-decimal
    currency Stripe lists is in our list."""
    assert money.STRIPE_ZERO_DECIMAL == STRIPE_ZERO_DECIMAL_DOCS
    assert money.STRIPE_THREE_DECIMAL == STRIPE_THREE_DECIMAL_DOCS
    differ = {c for c in STRIPE_ZERO_DECIMAL_DOCS if money.exponent(c) != 0}
    assert differ == {"mga"}
    assert all(money.exponent(c) == 3 for c in STRIPE_THREE_DECIMAL_DOCS)
    # Stripe's special cases: ISK is zero-decimal in ISO but sent in the two-decimal form;
    # HUF and TWD are two-decimal in both.
    assert money.exponent("isk") == 0 and money.exponent("huf") == 2 and money.exponent("twd") == 2


def test_iso_zero_decimal_currencies_stripe_does_not_list_are_iso_facts() -> None:
    iso_zero = {c.code.lower() for c in Currency if c.exponent == 0}
    assert STRIPE_ZERO_DECIMAL_DOCS - {"mga"} <= iso_zero
    assert "isk" in iso_zero - STRIPE_ZERO_DECIMAL_DOCS  # the special case above


@pytest.mark.parametrize(
    ("minor", "currency", "sent"),
    [
        (1250, "eur", 1250),
        (1250, "jpy", 1250),
        (12500, "kwd", 12500),
        (5, "isk", 500),
        (500, "mga", 5),
        (1234, "huf", 1234),
    ],
)
def test_provider_amounts_round_trip(minor: int, currency: str, sent: int) -> None:
    assert money.provider_amount(minor, currency) == sent
    assert money.from_provider_amount(sent, currency) == minor


def test_charge_units() -> None:
    assert money.charge_unit("kwd") == 10
    assert money.charge_unit("mga") == 100
    assert money.charge_unit("eur") == money.charge_unit("jpy") == money.charge_unit("isk") == 1
    with pytest.raises(MoneyError, match=r"steps of 0\.010"):
        money.to_charge_minor("12.345", "kwd")
    assert money.to_charge_minor("12.340", "kwd") == 12340


@pytest.mark.parametrize(
    ("exact", "unit", "rounded"),
    [("0.5", 1, 1), ("1.49", 1, 1), ("2.5", 1, 3), ("12875", 10, 12880), ("12874.9", 10, 12870)],
)
def test_round_half_up(exact: str, unit: int, rounded: int) -> None:
    assert money.round_half_up(Decimal(exact), unit) == rounded
