"""Money as integer minor units; decimal strings only at the edges."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# Stripe's zero-decimal currencies; every other currency here has two decimals.
ZERO_DECIMAL = frozenset(
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
MAX_MINOR = 100_000_000  # a ticket above a million units is a typo, not a price


class MoneyError(ValueError):
    pass


def exponent(currency: str) -> int:
    return 0 if currency.lower() in ZERO_DECIMAL else 2


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """'12.50' usd -> 1250; refuses negatives, NaN and sub-minor precision."""
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


def format_minor(minor: int, currency: str) -> str:
    """1250 usd -> '12.50'."""
    digits = exponent(currency)
    if digits == 0:
        return str(minor)
    return f"{Decimal(minor).scaleb(-digits):.{digits}f}"
