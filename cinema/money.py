"""Money as integer minor units of ISO 4217; decimal strings only at the edges.

The exponent of each currency (JPY 0, EUR 2, KWD 3) comes from the ISO 4217 table shipped by
the `iso4217` package. Codes ISO lists without an exponent (gold, test codes, XXX) and codes
it does not list are unknown: a screening cannot be priced in them.

The payment provider (Stripe) speaks its own minor units for a few currencies; the
conversion and the smallest amount it can charge live here too, next to the table they
differ from (tests/test_money.py compares them with Stripe's published lists)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from iso4217 import Currency

MAX_MINOR = 100_000_000  # a ticket above a million units is a typo, not a price

# Stripe's zero-decimal currencies (its docs, "Zero-decimal"): the API amount is whole units.
# All but MGA are zero-decimal in ISO 4217 too; MGA has 2 ISO decimals that Stripe cannot
# charge, so its amounts are charged in whole ariary.
STRIPE_ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
# Stripe's three-decimal currencies: ISO minor units, but the last digit must be 0.
STRIPE_THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
# Stripe's special case: ISK is zero-decimal in ISO 4217 and has no fractions, yet Stripe's
# API keeps the two-decimal form (5 ISK is sent as 500). HUF and TWD are two-decimal in ISO
# and in the API alike (Stripe's special case for them concerns payouts only).
STRIPE_TWO_DECIMAL_FORM = frozenset({"isk"})


class MoneyError(ValueError):
    pass


def _pow10(digits: int) -> int:
    factor: int = 10**digits
    return factor


def _exponent_or_none(currency: str) -> int | None:
    member = Currency.__members__.get(currency.lower())
    return None if member is None else member.exponent


def is_known(currency: str) -> bool:
    """An ISO 4217 currency with minor units (what a price can be in)."""
    return _exponent_or_none(currency) is not None


def exponent(currency: str) -> int:
    """ISO 4217 decimals of `currency`; MoneyError for a code ISO does not price in."""
    digits = _exponent_or_none(currency)
    if digits is None:
        raise MoneyError(f"{currency.upper()[:8]!r} is not an ISO 4217 currency code")
    return digits


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """'12.50' usd -> 1250, '12.500' kwd -> 12500; refuses negatives, NaN, sub-minor digits."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise MoneyError(f"{amount!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise MoneyError(f"{amount!r} must be a non-negative number")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount!r} has more decimals than {currency.upper()} allows")
    minor = int(scaled)
    if minor > MAX_MINOR:
        raise MoneyError(f"{amount!r} is too large")
    return minor


def to_charge_minor(amount: Decimal | int | str, currency: str) -> int:
    """to_minor, and a multiple of the currency's charge unit (KWD in steps of 0.010)."""
    minor = to_minor(amount, currency)
    unit = charge_unit(currency)
    if minor % unit:
        step = format_minor(unit, currency)
        raise MoneyError(f"{currency.upper()} amounts go in steps of {step} (what can be charged)")
    return minor


def to_minor_exact(amount: Decimal, currency: str) -> Decimal:
    """A major-unit amount in minor units, unrounded (a fixed discount of 0.005 EUR is 0.5)."""
    return amount.scaleb(exponent(currency))


def format_minor(minor: int, currency: str) -> str:
    """1250 usd -> '12.50', 12500 kwd -> '12.500', 1250 jpy -> '1250'."""
    digits = exponent(currency)
    if digits == 0:
        return str(minor)
    return f"{Decimal(minor).scaleb(-digits):.{digits}f}"


def charge_unit(currency: str) -> int:
    """The smallest step, in ISO minor units, an amount the provider charges can move by:
    10 for Stripe's three-decimal currencies, 100 for MGA (Stripe charges whole ariary),
    else 1. Totals are rounded to it (once, half-up) so every total can be charged as is."""
    code = currency.lower()
    if code in STRIPE_THREE_DECIMAL:
        return 10
    return _pow10(exponent(code)) if code in STRIPE_ZERO_DECIMAL else 1


def round_half_up(minor: Decimal, unit: int = 1) -> int:
    """Round an exact minor-unit amount to a multiple of `unit`, halves away from zero."""
    steps = (minor / unit).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(steps) * unit


def provider_amount(minor: int, currency: str) -> int:
    """ISO minor units -> the integer Stripe's API expects for `currency`."""
    code = currency.lower()
    if code in STRIPE_ZERO_DECIMAL:
        return minor // _pow10(exponent(code))
    if code in STRIPE_TWO_DECIMAL_FORM:
        return minor * _pow10(2 - exponent(code))
    return minor


def from_provider_amount(amount: int, currency: str) -> int:
    """The inverse of provider_amount: what a Stripe event's amount is in ISO minor units."""
    code = currency.lower()
    if not is_known(code):
        return amount
    if code in STRIPE_ZERO_DECIMAL:
        return amount * _pow10(exponent(code))
    if code in STRIPE_TWO_DECIMAL_FORM:
        return amount // _pow10(2 - exponent(code))
    return amount
