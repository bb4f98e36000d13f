"""Pricing types: what a screening sells (ticket types, fees), what a booking pays for (ticket
lines, totals) and promo codes. Amounts are integer ISO 4217 minor units (cinema/money.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

DEFAULT_TICKET_TYPE = "adult"


@dataclass(frozen=True, slots=True)
class TicketType:
    """One kind of ticket a screening sells. Its unit price is its own price for the seat's
    category when `prices` is set, else the category price less `discount` (never below 0)."""

    code: str
    name: str
    prices: dict[str, int] | None = None  # category -> minor units
    discount: int = 0  # minor units off the category price
    min_age_note: str | None = None
    max_per_booking: int | None = None

    def unit_price(self, category: str, category_prices: dict[str, int]) -> int:
        if self.prices is not None:
            return self.prices[category]
        return max(0, category_prices[category] - self.discount)


DEFAULT_TICKET_TYPES = (TicketType(DEFAULT_TICKET_TYPE, "Adult"),)


@dataclass(frozen=True, slots=True)
class Fees:
    per_ticket: int = 0  # minor units per ticket
    percent: Decimal = Decimal(0)  # of the subtotal (before any discount)

    @property
    def empty(self) -> bool:
        return self.per_ticket == 0 and self.percent == 0


NO_FEES = Fees()


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """One ticket as the buyer asks for it. seat_id None: a general-admission place;
    ticket_type None: the screening's first (default) ticket type."""

    seat_id: int | None
    ticket_type: str | None = None


@dataclass(frozen=True, slots=True)
class TicketLine:
    """One ticket as sold: what the booking's answer lists and a reservation row stores."""

    seat_id: int | None
    category: str
    ticket_type: str
    price: int  # minor units


@dataclass(frozen=True, slots=True)
class Totals:
    subtotal: int
    discount: int
    fees: int
    total: int  # subtotal - discount + fees; what the customer is charged


class PromoKind(StrEnum):
    PERCENT = "percent"
    FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class PromoCode:
    id: int
    code: str  # upper case; matched without case
    kind: PromoKind
    value: Decimal  # percent (0-100], or major units of the screening's currency off
    max_uses: int
    max_uses_per_customer: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    screening_ids: frozenset[int] | None  # None: every screening
    ticket_types: frozenset[str] | None  # None: every ticket type
    active: bool
    created_at: datetime
    uses: int = 0  # live uses when read (informational; the booking transaction decides)


@dataclass(frozen=True, slots=True)
class NewPromoCode:
    code: str
    kind: PromoKind
    value: Decimal
    max_uses: int
    max_uses_per_customer: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    screening_ids: frozenset[int] | None
    ticket_types: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class TicketTypeSpec:
    """A ticket type as staff write it: major-unit decimals, in the screening's currency."""

    code: str
    name: str
    prices: dict[str, Decimal] | None = None
    discount: Decimal | None = None
    min_age_note: str | None = None
    max_per_booking: int | None = None


@dataclass(frozen=True, slots=True)
class FeesSpec:
    per_ticket: Decimal | None = None
    percent: Decimal | None = None
