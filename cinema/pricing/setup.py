"""From what staff write (decimal strings in the screening's currency) to what is stored and
priced (minor units), with the checks a screening's offer must pass."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from cinema.money import MoneyError, to_charge_minor
from cinema.pricing.model import (
    DEFAULT_TICKET_TYPES,
    NO_FEES,
    Fees,
    FeesSpec,
    TicketType,
    TicketTypeSpec,
)


class OfferError(ValueError):
    """A ticket type or fee a screening cannot sell (the message is for the client)."""


def _minor(amount: Decimal, currency: str, what: str) -> int:
    try:
        return to_charge_minor(amount, currency)
    except MoneyError as exc:
        raise OfferError(f"{what}: {exc}") from None


def ticket_types(
    specs: Sequence[TicketTypeSpec] | None, categories: Iterable[str], currency: str
) -> tuple[TicketType, ...]:
    """The screening's ticket types (absent: one `adult` type at the category prices)."""
    if not specs:
        return DEFAULT_TICKET_TYPES
    wanted = sorted(set(categories))
    codes = [s.code for s in specs]
    if len(set(codes)) != len(codes):
        raise OfferError("ticket_types: a code appears more than once")
    return tuple(_ticket_type(spec, wanted, currency) for spec in specs)


def _ticket_type(spec: TicketTypeSpec, categories: list[str], currency: str) -> TicketType:
    where = f"ticket_types.{spec.code}"
    if spec.prices is not None and spec.discount is not None:
        raise OfferError(f"{where}: give either prices or a discount, not both")
    prices = None
    if spec.prices is not None:
        missing = sorted(set(categories) - set(spec.prices))
        unused = sorted(set(spec.prices) - set(categories))
        if missing or unused:
            raise OfferError(f"{where}.prices must name exactly the seat categories {categories}")
        prices = {c: _minor(p, currency, f"{where}.prices.{c}") for c, p in spec.prices.items()}
    discount = 0 if spec.discount is None else _minor(spec.discount, currency, f"{where}.discount")
    return TicketType(
        code=spec.code,
        name=spec.name,
        prices=prices,
        discount=discount,
        min_age_note=spec.min_age_note,
        max_per_booking=spec.max_per_booking,
    )


def fees(spec: FeesSpec | None, currency: str) -> Fees:
    if spec is None:
        return NO_FEES
    per_ticket = 0
    if spec.per_ticket is not None:
        per_ticket = _minor(spec.per_ticket, currency, "fees.per_ticket")
    percent = Decimal(0) if spec.percent is None else spec.percent
    return Fees(per_ticket=per_ticket, percent=percent)
