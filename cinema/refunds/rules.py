"""Refund rules as plain functions: each ticket's share of what was paid, the customer's
cancel window.

The share rule. A booking's amount A = subtotal - discount + fees is split over its tickets
in proportion to their prices p_i (equally if every price is 0), in the currency's charge
unit u (cinema/money.py: 1, or 10 for Stripe's three-decimal currencies, 100 for MGA; A is
always a multiple of u). Each ticket gets floor(A/u * p_i / sum p) units; the units left
over go one each to the tickets with the largest remainders, ties to the lower seat id. So
the shares are exact integers, each one chargeable, and they add up to A exactly:
refunding every ticket, in any number of partial refunds, gives back exactly what was paid.
A ticket's share thus carries its part of the fees and of the discount."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cinema.money import charge_unit
from cinema.pricing.model import TicketLine


def ticket_shares(amount: int, currency: str, tickets: Sequence[TicketLine]) -> dict[int, int]:
    """seat id -> that ticket's share of `amount` (see the module's rule)."""
    if not tickets:
        return {}
    unit = charge_unit(currency)
    units, stray = divmod(amount, unit)
    ordered = sorted(tickets, key=_seat)
    weights = [t.price for t in ordered]
    if sum(weights) == 0:
        weights = [1] * len(ordered)
    total = sum(weights)
    base = [units * w // total for w in weights]
    remainders = [units * w % total for w in weights]
    left = units - sum(base)
    by_remainder = sorted(range(len(ordered)), key=lambda i: (-remainders[i], _seat(ordered[i])))
    for i in by_remainder[:left]:
        base[i] += 1
    shares = {_seat(t): b * unit for t, b in zip(ordered, base, strict=True)}
    if stray:  # an amount off the charge unit (older rows): the first ticket takes the rest
        shares[_seat(ordered[0])] += stray
    return shares


def _seat(ticket: TicketLine) -> int:
    return ticket.seat_id or 0  # a stored ticket always names its seat (or place)


def customer_may_cancel(starts_at: datetime, now: datetime, hours: int) -> bool:
    """Up to `hours` before the start (inclusive)."""
    return now <= starts_at - timedelta(hours=hours)
