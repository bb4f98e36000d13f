"""Catalogue types shared by the store, the services and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cinema.pricing.model import DEFAULT_TICKET_TYPES, NO_FEES, Fees, FeesSpec, TicketType

GA_CATEGORY = "general"  # the one price category of a general-admission screening
GA_ROW = "GA"  # the row label of its places (seat rows of a hall of its own, db/006)


@dataclass(frozen=True, slots=True)
class Movie:
    id: int
    title: str
    description: str
    duration_minutes: int


@dataclass(frozen=True, slots=True)
class SeatSpec:
    """One seat as the layout describes it, before it has a database id."""

    row_label: str
    row_index: int
    number: int
    position: int
    category: str


@dataclass(frozen=True, slots=True)
class Seat:
    id: int
    row_label: str
    row_index: int
    number: int
    category: str


@dataclass(frozen=True, slots=True)
class Hall:
    id: int
    name: str
    layout: dict[str, Any]
    seat_count: int
    categories: tuple[str, ...]
    # the fees of a screening created here without its own (converted in its currency)
    default_fees: FeesSpec | None = None


@dataclass(frozen=True, slots=True)
class Screening:
    id: int
    movie_id: int
    hall_id: int
    starts_at: datetime
    prices: dict[str, int]  # category -> minor units
    currency: str
    ticket_types: tuple[TicketType, ...] = DEFAULT_TICKET_TYPES  # the first is the default
    fees: Fees = NO_FEES
    # General admission: the number of places, and hall_id is a hall of its own whose seats
    # are the places (never shown as a hall). None: a seated screening.
    capacity: int | None = None
    max_tickets_per_customer: int | None = None
    # Set once staff cancel it (POST /api/admin/screenings/{id}/cancel); never cleared.
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None

    @property
    def general_admission(self) -> bool:
        return self.capacity is not None


@dataclass(frozen=True, slots=True)
class ScreeningSnapshot:
    """What booking needs to know about a screening; immutable once created, so cacheable."""

    screening: Screening
    seats: tuple[Seat, ...]  # ordered by row, then seat number
    seats_by_id: dict[int, Seat] = field(repr=False)

    @classmethod
    def of(cls, screening: Screening, seats: tuple[Seat, ...]) -> ScreeningSnapshot:
        return cls(screening, seats, {s.id: s for s in seats})
