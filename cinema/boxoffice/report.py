"""A screening's sales report: places, bookings by state, revenue by category and ticket
type, fees, promo discounts, refunds, no-shows. Every figure is read from the bookings and
their tickets in one snapshot (cinema/store/report.py); nothing here is stored twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cinema.booking.errors import ScreeningNotFound


@dataclass(frozen=True, slots=True)
class RevenueLine:
    """Tickets of sold bookings (CONFIRMED, COMPLETED, NO_SHOW) of one category and ticket
    type, at their unit prices (before promo discounts, which are per booking)."""

    category: str
    ticket_type: str
    tickets: int
    amount: int  # minor units


@dataclass(frozen=True, slots=True)
class PromoLine:
    code: str
    bookings: int
    discount: int  # minor units


@dataclass(frozen=True, slots=True)
class SalesReport:
    screening_id: int
    movie_title: str
    starts_at: datetime
    ends_at: datetime
    currency: str
    general_admission: bool
    places: int  # seats of the hall, or general-admission places
    held: int  # PENDING tickets whose hold has not lapsed
    sold: int  # tickets of CONFIRMED, COMPLETED and NO_SHOW bookings
    checked_in: int
    bookings_by_status: dict[str, int]
    cancelled_by_reason: dict[str, int]
    revenue: tuple[RevenueLine, ...]
    sold_bookings: int
    gross: int  # the sold tickets' prices: the sum of `revenue`
    discounts: int
    fees: int
    net: int  # what the sold bookings were charged: gross - discounts + fees
    # Of the sold bookings' partial refunds: made or pending at the provider (never a failed
    # one: that money is still here, owed), and the pending part of that.
    sold_refunded: int
    sold_refund_pending: int
    promo_codes: tuple[PromoLine, ...]
    refunds: int  # refunds made or pending (not failed), of every booking: count, amount
    refunded: int
    refunds_pending: int
    refunds_pending_amount: int  # part of `refunded`: the provider has not confirmed them yet
    refunds_failed: int  # the provider could not make them: owed, handled by staff; their
    refunds_failed_amount: int  # amount is in neither `refunded` nor `sold_refunded`
    refunds_by_source: dict[str, tuple[int, int]]  # staff, customer, screening, late_payment
    no_show_bookings: int
    no_show_tickets: int

    @property
    def available(self) -> int:
        return max(self.places - self.held - self.sold, 0)

    @property
    def kept(self) -> int:
        """What the sold bookings brought in and keep: net less their partial refunds (a
        booking refunded whole is CANCELLED, neither in `net` nor here)."""
        return self.net - self.sold_refunded


class ReportStore(Protocol):
    async def sales_report(self, screening_id: int) -> SalesReport | None: ...


class Reports:
    def __init__(self, store: ReportStore) -> None:
        self._store = store

    async def screening(self, screening_id: int) -> SalesReport:
        report = await self._store.sales_report(screening_id)
        if report is None:
            raise ScreeningNotFound(screening_id)
        return report
