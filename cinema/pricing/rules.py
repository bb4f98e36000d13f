"""Pricing as plain functions: ticket lines from a request, totals from the lines, whether a
promo code applies. Exact integer minor units in, exact Decimals in between, and one
rounding, half-up, at the end (to the currency's charge unit, cinema/money.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from cinema.money import charge_unit, round_half_up, to_minor_exact
from cinema.pricing.errors import PromoCodeInvalid, TicketTypeLimit, UnknownTicketType
from cinema.pricing.model import (
    Fees,
    PromoCode,
    PromoKind,
    TicketLine,
    TicketRequest,
    TicketType,
    Totals,
)

_HUNDRED = Decimal(100)


def ticket_type_of(types: Sequence[TicketType], code: str | None) -> TicketType:
    """The type named `code` (None: the first, the screening's default)."""
    if code is None:
        return types[0]
    for ticket_type in types:
        if ticket_type.code == code:
            return ticket_type
    raise UnknownTicketType(code, [t.code for t in types])


def check_limits(types: Sequence[TicketType], lines: Iterable[TicketLine]) -> None:
    """Each type's max_per_booking (a request over it is refused before anything is taken)."""
    counts = Counter(line.ticket_type for line in lines)
    for ticket_type in types:
        limit = ticket_type.max_per_booking
        if limit is not None and counts[ticket_type.code] > limit:
            raise TicketTypeLimit(ticket_type.code, limit)


def ticket_lines(
    types: Sequence[TicketType],
    category_prices: dict[str, int],
    requests: Iterable[TicketRequest],
    category_of: Callable[[TicketRequest], str],
) -> tuple[TicketLine, ...]:
    """One priced line per requested ticket, in request order."""
    lines = []
    for request in requests:
        ticket_type = ticket_type_of(types, request.ticket_type)
        category = category_of(request)
        price = ticket_type.unit_price(category, category_prices)
        lines.append(TicketLine(request.seat_id, category, ticket_type.code, price))
    check_limits(types, lines)
    return tuple(lines)


def _exact_discount(lines: Sequence[TicketLine], promo: PromoCode | None, currency: str) -> Decimal:
    if promo is None:
        return Decimal(0)
    eligible = Decimal(
        sum(
            line.price
            for line in lines
            if promo.ticket_types is None or line.ticket_type in promo.ticket_types
        )
    )
    if promo.kind is PromoKind.PERCENT:
        return eligible * promo.value / _HUNDRED
    # A fixed discount larger than what it applies to takes that to zero, never below.
    return min(eligible, to_minor_exact(promo.value, currency))


def totals(
    lines: Sequence[TicketLine], fees: Fees, currency: str, promo: PromoCode | None = None
) -> Totals:
    """subtotal - discount + fees = total. The percentage fee is of the subtotal (before the
    discount: the service costs the same). Only the total is rounded from the exact sum; the
    discount shown is the exact discount rounded alike, and the fees are what makes the sum
    come out (they equal the rounded exact fees but for a rounding step, and are never < 0)."""
    subtotal = sum(line.price for line in lines)
    unit = charge_unit(currency)
    discount = _exact_discount(lines, promo, currency)
    exact_fees = Decimal(fees.per_ticket * len(lines)) + Decimal(subtotal) * fees.percent / _HUNDRED
    total = max(0, round_half_up(Decimal(subtotal) - discount + exact_fees, unit))
    shown_discount = min(subtotal, round_half_up(discount, unit))
    return Totals(subtotal, shown_discount, total - subtotal + shown_discount, total)


def check_promo(
    promo: PromoCode, screening_id: int, lines: Sequence[TicketLine], now: datetime
) -> None:
    """Raise PromoCodeInvalid naming the reason when `promo` cannot be used for these tickets
    now. Uses left are not checked here: the booking transaction counts them."""
    if not promo.active:
        raise PromoCodeInvalid("deactivated", f"promo code {promo.code} is no longer active")
    if promo.valid_from is not None and now < promo.valid_from:
        raise PromoCodeInvalid("not_yet_valid", f"promo code {promo.code} is not valid yet")
    if promo.valid_until is not None and now >= promo.valid_until:
        raise PromoCodeInvalid("expired", f"promo code {promo.code} has expired")
    if promo.screening_ids is not None and screening_id not in promo.screening_ids:
        raise PromoCodeInvalid(
            "wrong_screening", f"promo code {promo.code} is not valid for this screening"
        )
    if promo.ticket_types is not None and not any(
        line.ticket_type in promo.ticket_types for line in lines
    ):
        raise PromoCodeInvalid(
            "wrong_ticket_type",
            f"promo code {promo.code} applies only to ticket types {sorted(promo.ticket_types)}",
        )
