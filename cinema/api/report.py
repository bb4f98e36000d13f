"""GET /api/admin/screenings/{id}/report: a screening's sales report (admins), as JSON or,
with ?format=csv, as one flat table a spreadsheet opens as it is."""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web

from cinema.api.io import Inputs, json_response, path_id
from cinema.api.keys import REPORTS
from cinema.api.schemas import ReportQuery
from cinema.booking.model import BookingStatus
from cinema.boxoffice.report import SalesReport
from cinema.money import format_minor

CSV_COLUMNS = ("section", "name", "detail", "count", "amount", "amount_minor", "currency")


def _money(name: str, minor: int, currency: str) -> dict[str, Any]:
    return {name: format_minor(minor, currency), f"{name}_minor": minor}


def report_json(r: SalesReport) -> dict[str, Any]:
    cur = r.currency
    statuses = {s.value: r.bookings_by_status.get(s.value, 0) for s in BookingStatus}
    return {
        "screening_id": r.screening_id,
        "movie_title": r.movie_title,
        "starts_at": r.starts_at.isoformat(),
        "ends_at": r.ends_at.isoformat(),
        "currency": cur,
        "general_admission": r.general_admission,
        "places": {
            "total": r.places,
            "available": r.available,
            "held": r.held,
            "sold": r.sold,
            "checked_in": r.checked_in,
        },
        "bookings": {"by_status": statuses, "cancelled_by_reason": dict(r.cancelled_by_reason)},
        "revenue": {
            "lines": [
                {
                    "category": line.category,
                    "ticket_type": line.ticket_type,
                    "tickets": line.tickets,
                    **_money("amount", line.amount, cur),
                }
                for line in r.revenue
            ],
            "sold_bookings": r.sold_bookings,
            **_money("gross", r.gross, cur),
            **_money("discounts", r.discounts, cur),
            **_money("fees", r.fees, cur),
            **_money("net", r.net, cur),
            **_money("refunded", r.sold_refunded, cur),
            **_money("refund_pending", r.sold_refund_pending, cur),
            **_money("kept", r.kept, cur),
        },
        "promo_codes": [
            {"code": p.code, "bookings": p.bookings, **_money("discount", p.discount, cur)}
            for p in r.promo_codes
        ],
        "refunds": {
            "count": r.refunds,
            "pending": r.refunds_pending,
            "failed": r.refunds_failed,
            **_money("amount", r.refunded, cur),
            **_money("pending_amount", r.refunds_pending_amount, cur),
            **_money("failed_amount", r.refunds_failed_amount, cur),
            "by_source": {
                source: {"count": n, **_money("amount", minor, cur)}
                for source, (n, minor) in sorted(r.refunds_by_source.items())
            },
        },
        "no_shows": {"bookings": r.no_show_bookings, "tickets": r.no_show_tickets},
    }


def report_rows(r: SalesReport) -> list[tuple[Any, ...]]:
    """One row per figure: (section, name, detail, count, amount, amount_minor, currency)."""
    cur = r.currency

    def money(section: str, name: str, detail: str, count: Any, minor: int) -> tuple[Any, ...]:
        return (section, name, detail, count, format_minor(minor, cur), minor, cur)

    rows: list[tuple[Any, ...]] = [
        ("places", name, "", count, "", "", "")
        for name, count in (
            ("total", r.places),
            ("available", r.available),
            ("held", r.held),
            ("sold", r.sold),
            ("checked_in", r.checked_in),
        )
    ]
    rows += [
        ("bookings", s.value, "", r.bookings_by_status.get(s.value, 0), "", "", "")
        for s in BookingStatus
    ]
    rows += [
        ("cancelled", reason, "", n, "", "", "")
        for reason, n in sorted(r.cancelled_by_reason.items())
    ]
    rows += [money("revenue", x.category, x.ticket_type, x.tickets, x.amount) for x in r.revenue]
    rows += [
        money("totals", "gross", "", r.sold_bookings, r.gross),
        money("totals", "discounts", "", "", r.discounts),
        money("totals", "fees", "", "", r.fees),
        money("totals", "net", "", r.sold_bookings, r.net),
        money("totals", "refunded", "", "", r.sold_refunded),
        money("totals", "refund_pending", "", "", r.sold_refund_pending),
        money("totals", "kept", "", "", r.kept),
    ]
    rows += [money("promo_code", p.code, "", p.bookings, p.discount) for p in r.promo_codes]
    rows.append(money("refunds", "refunds", f"{r.refunds_pending} pending", r.refunds, r.refunded))
    rows += [
        money("refunds", source, "", n, minor)
        for source, (n, minor) in sorted(r.refunds_by_source.items())
    ]
    rows.append(money("refunds", "pending", "", r.refunds_pending, r.refunds_pending_amount))
    rows.append(money("refunds", "failed", "", r.refunds_failed, r.refunds_failed_amount))
    rows += [
        ("no_shows", "bookings", "", r.no_show_bookings, "", "", ""),
        ("no_shows", "tickets", "", r.no_show_tickets, "", "", ""),
    ]
    return rows


def report_csv(r: SalesReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    writer.writerows(report_rows(r))
    return out.getvalue()


async def screening_report(request: web.Request, given: Inputs[None, ReportQuery]) -> web.Response:
    report = await request.app[REPORTS].screening(path_id(request))
    if given.query.format == "csv":
        return web.Response(
            text=report_csv(report),
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Content-Disposition": (
                    f'attachment; filename="screening-{report.screening_id}-report.csv"'
                )
            },
        )
    return json_response(report_json(report))
