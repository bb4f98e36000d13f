"""The refund share rule (cinema/refunds/rules.py): exact integer shares that add up to what
was paid, in 0-, 2- and 3-decimal currencies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations

import pytest

from cinema.money import charge_unit
from cinema.pricing.model import TicketLine
from cinema.refunds.rules import customer_may_cancel, ticket_shares


def lines(*prices: int) -> list[TicketLine]:
    return [TicketLine(100 + i, "standard", "adult", p) for i, p in enumerate(prices)]


@pytest.mark.parametrize(
    ("currency", "amount", "prices", "expected"),
    [
        # 2 decimals: 3 x 10.00 with a 1.00 fee and 3.00 off -> 28.00, 9.34 / 9.33 / 9.33
        ("usd", 2800, (1000, 1000, 1000), [934, 933, 933]),
        ("eur", 1500, (1000, 500), [1000, 500]),
        # 0 decimals: 1,000 yen over three equal tickets
        ("jpy", 1000, (400, 400, 400), [334, 333, 333]),
        # 3 decimals (Stripe charges KWD in steps of 0.010): shares stay multiples of 10
        ("kwd", 10_000, (3_000, 3_000, 3_000), [3_340, 3_330, 3_330]),
        ("bhd", 7_770, (1_000, 2_000), [2_590, 5_180]),
        # 3 decimals where ISO and Stripe agree on the unit (TND is 10 too; LYD is 1)
        ("lyd", 1_001, (1, 1), [501, 500]),
        # free tickets with a fee: split equally
        ("usd", 101, (0, 0), [51, 50]),
        ("usd", 0, (500, 500), [0, 0]),
    ],
)
def test_shares_are_exact_and_add_up(
    currency: str, amount: int, prices: tuple[int, ...], expected: list[int]
) -> None:
    tickets = lines(*prices)
    shares = ticket_shares(amount, currency, tickets)
    assert [shares[t.seat_id] for t in tickets] == expected
    assert sum(shares.values()) == amount
    unit = charge_unit(currency)
    assert all(s % unit == 0 for s in shares.values())


@pytest.mark.parametrize("currency", ["usd", "jpy", "kwd", "mga"])
def test_any_partial_refunds_never_exceed_the_amount(currency: str) -> None:
    unit = charge_unit(currency)
    for amount in (0, unit, 7 * unit, 997 * unit, 123_457 * unit):
        tickets = lines(1250, 990, 0, 3333)
        shares = ticket_shares(amount, currency, tickets)
        assert sum(shares.values()) == amount
        for size in range(1, len(tickets) + 1):
            for subset in combinations(shares.values(), size):
                assert 0 <= sum(subset) <= amount


def test_ties_go_to_the_lower_seat_and_order_does_not_matter() -> None:
    tickets = lines(100, 100, 100)
    forward = ticket_shares(200, "usd", tickets)
    backward = ticket_shares(200, "usd", list(reversed(tickets)))
    assert forward == backward == {100: 67, 101: 67, 102: 66}


def test_cancel_window() -> None:
    start = datetime(2030, 1, 2, 20, 0, tzinfo=UTC)
    assert customer_may_cancel(start, start - timedelta(hours=24), 24)
    assert not customer_may_cancel(start, start - timedelta(hours=23, minutes=59), 24)
    assert customer_may_cancel(start, start - timedelta(minutes=1), 0)
