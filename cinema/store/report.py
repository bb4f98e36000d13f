"""A screening's sales report from PostgreSQL: a few aggregate reads of its bookings and
tickets in one read-only REPEATABLE READ transaction, so every figure is of one instant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cinema.boxoffice.report import PromoLine, RevenueLine, SalesReport
from cinema.store.bookings import (
    CANCELLED_SQL,
    COMPLETED_SQL,
    CONFIRMED_SQL,
    NO_SHOW_SQL,
    PENDING_SQL,
)
from cinema.store.pool import Pool

_SOLD = f"({CONFIRMED_SQL}, {COMPLETED_SQL}, {NO_SHOW_SQL})"

_SCREENING = """
    SELECT s.id, s.starts_at, s.currency, s.capacity IS NOT NULL AS general_admission,
           m.title, s.starts_at + make_interval(mins => m.duration_minutes) AS ends_at,
           (SELECT count(*) FROM seats WHERE hall_id = s.hall_id) AS places
    FROM screenings s JOIN movies m ON m.id = s.movie_id WHERE s.id = $1
"""

_TICKETS = f"""
    SELECT count(*) FILTER (WHERE status = {PENDING_SQL} AND expires_at > now()) AS held,
           count(*) FILTER (WHERE status IN {_SOLD}) AS sold,
           count(*) FILTER (WHERE checked_in_at IS NOT NULL) AS checked_in,
           count(*) FILTER (WHERE status = {NO_SHOW_SQL}) AS no_show_tickets
    FROM reservations WHERE screening_id = $1 AND status <> {CANCELLED_SQL}
"""

_BOOKINGS = """
    SELECT status::text AS status, cancel_reason, count(*) AS n
    FROM bookings WHERE screening_id = $1 GROUP BY 1, 2
"""

_REVENUE = f"""
    SELECT s.category, r.ticket_type, count(*) AS tickets,
           coalesce(sum(r.price_minor), 0) AS amount
    FROM reservations r JOIN bookings b ON b.id = r.booking_id JOIN seats s ON s.id = r.seat_id
    WHERE r.screening_id = $1 AND b.status IN {_SOLD} AND r.status IN {_SOLD}
    GROUP BY 1, 2 ORDER BY 1, 2
"""

_TOTALS = f"""
    SELECT count(*) AS bookings, coalesce(sum(coalesce(subtotal_minor, amount)), 0) AS gross,
           coalesce(sum(discount_minor), 0) AS discounts, coalesce(sum(fees_minor), 0) AS fees,
           coalesce(sum(amount), 0) AS net
    FROM bookings WHERE screening_id = $1 AND status IN {_SOLD}
"""

# The sold bookings' partial refunds from the refunds table, not `bookings.refunded_minor`:
# that column also holds failed refunds (the money is still here, owed: never refunded twice).
_SOLD_REFUNDS = f"""
    SELECT coalesce(sum(r.amount_minor) FILTER (WHERE r.status <> 'failed'), 0) AS refunded,
           coalesce(sum(r.amount_minor) FILTER (WHERE r.status = 'pending'), 0) AS pending
    FROM refunds r JOIN bookings b ON b.id = r.booking_id
    WHERE b.screening_id = $1 AND b.status IN {_SOLD}
"""

_PROMOS = f"""
    SELECT p.code, count(*) AS bookings, coalesce(sum(b.discount_minor), 0) AS discount
    FROM bookings b JOIN promo_codes p ON p.id = b.promo_code_id
    WHERE b.screening_id = $1 AND b.status IN {_SOLD}
    GROUP BY p.code ORDER BY p.code
"""

# Money sent back, by source: the refunds table (staff, customer cancel, cancelled
# screening), and payments settlement refunded in full (paid too late or for another amount),
# which have no refunds row. Failed ones are counted apart: that money is still owed.
_REFUNDS = """
    SELECT r.source, r.status, count(*) AS n, coalesce(sum(r.amount_minor), 0) AS amount
    FROM refunds r JOIN bookings b ON b.id = r.booking_id WHERE b.screening_id = $1
    GROUP BY 1, 2
    UNION ALL
    SELECT 'late_payment',
           CASE WHEN b.payment_status = 'refund_pending' THEN 'pending' ELSE 'refunded' END,
           count(*), coalesce(sum(b.amount), 0)
    FROM bookings b
    WHERE b.screening_id = $1 AND b.payment_status IN ('refund_pending', 'refunded')
      AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.booking_id = b.id)
    GROUP BY 1, 2
"""


@dataclass(slots=True)
class _Refunds:
    """Made or pending (count, amount), of which pending, and failed apart (count, amount)."""

    count: int = 0
    amount: int = 0
    pending: int = 0
    pending_amount: int = 0
    failed: int = 0
    failed_amount: int = 0
    by_source: dict[str, tuple[int, int]] = field(default_factory=dict)


def _refunds(rows: list[Any]) -> _Refunds:
    out = _Refunds()
    for row in rows:
        n, money = int(row["n"]), int(row["amount"])
        if row["status"] == "failed":
            out.failed, out.failed_amount = out.failed + n, out.failed_amount + money
            continue
        out.count, out.amount = out.count + n, out.amount + money
        if row["status"] == "pending":
            out.pending, out.pending_amount = out.pending + n, out.pending_amount + money
        seen = out.by_source.get(row["source"], (0, 0))
        out.by_source[row["source"]] = (seen[0] + n, seen[1] + money)
    return out


def _by_status(rows: list[Any]) -> tuple[dict[str, int], dict[str, int]]:
    statuses: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + row["n"]
        if row["status"] == "CANCELLED":
            reason = row["cancel_reason"] or "unknown"
            reasons[reason] = reasons.get(reason, 0) + row["n"]
    return statuses, reasons


class PgReportStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def sales_report(self, screening_id: int) -> SalesReport | None:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = await conn.fetchrow(_SCREENING, screening_id)
            if head is None:
                return None
            tickets = await conn.fetchrow(_TICKETS, screening_id)
            bookings = list(await conn.fetch(_BOOKINGS, screening_id))
            revenue = await conn.fetch(_REVENUE, screening_id)
            totals = await conn.fetchrow(_TOTALS, screening_id)
            sold_refunds = await conn.fetchrow(_SOLD_REFUNDS, screening_id)
            promos = await conn.fetch(_PROMOS, screening_id)
            refunds = _refunds(list(await conn.fetch(_REFUNDS, screening_id)))
        statuses, reasons = _by_status(bookings)
        return SalesReport(
            screening_id=head["id"],
            movie_title=head["title"],
            starts_at=head["starts_at"],
            ends_at=head["ends_at"],
            currency=head["currency"].strip(),
            general_admission=head["general_admission"],
            places=head["places"],
            held=tickets["held"],
            sold=tickets["sold"],
            checked_in=tickets["checked_in"],
            bookings_by_status=statuses,
            cancelled_by_reason=reasons,
            revenue=tuple(
                RevenueLine(r["category"], r["ticket_type"], r["tickets"], int(r["amount"]))
                for r in revenue
            ),
            sold_bookings=totals["bookings"],
            gross=int(totals["gross"]),
            discounts=int(totals["discounts"]),
            fees=int(totals["fees"]),
            net=int(totals["net"]),
            sold_refunded=int(sold_refunds["refunded"]),
            sold_refund_pending=int(sold_refunds["pending"]),
            promo_codes=tuple(
                PromoLine(p["code"], p["bookings"], int(p["discount"])) for p in promos
            ),
            refunds=refunds.count,
            refunded=refunds.amount,
            refunds_pending=refunds.pending,
            refunds_pending_amount=refunds.pending_amount,
            refunds_failed=refunds.failed,
            refunds_failed_amount=refunds.failed_amount,
            refunds_by_source=refunds.by_source,
            no_show_bookings=statuses.get("NO_SHOW", 0),
            no_show_tickets=tickets["no_show_tickets"],
        )
