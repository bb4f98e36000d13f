"""The box office under /api/admin/: find bookings, one booking whole, check tickets in."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinema.api.bookings import booking_json
from cinema.api.io import Inputs, json_response, path_id
from cinema.api.keys import BOXOFFICE
from cinema.api.schemas import AdminBookingsQuery, CheckInIn
from cinema.booking.model import BookingStatus
from cinema.boxoffice.model import BookingDetail, BookingFilter, FoundBooking, TicketRecord


def staff_booking_json(found: FoundBooking, refund_id: str | None = None) -> dict[str, Any]:
    data = booking_json(found.booking)
    data["user_id"] = found.booking.user_id
    data["email"] = found.email
    payment = data.get("payment")
    if payment is not None:
        payment.pop("client_secret", None)  # the customer's, to pay with
        payment["refund_id"] = refund_id
    return data


def _ticket_json(ticket: TicketRecord) -> dict[str, Any]:
    return {
        "seat_id": ticket.seat_id,
        "row": ticket.row,
        "seat": ticket.number,
        "category": ticket.category,
        "ticket_type": ticket.ticket_type,
        "status": ticket.status.value,
        "checked_in_at": None if ticket.checked_in_at is None else ticket.checked_in_at.isoformat(),
        "checked_in_by": ticket.checked_in_by,
    }


def detail_json(detail: BookingDetail) -> dict[str, Any]:
    data = staff_booking_json(detail.found, detail.refund_id)
    data["tickets"] = [_ticket_json(t) for t in detail.tickets]
    sent = detail.tickets_sent_at
    data["tickets_sent_at"] = None if sent is None else sent.isoformat()
    data["history"] = [
        {"at": h.at.isoformat(), "source": h.source, "event": h.event, "detail": h.detail}
        for h in detail.history
    ]
    return data


async def find_bookings(
    request: web.Request, given: Inputs[None, AdminBookingsQuery]
) -> web.Response:
    q = given.query
    search = BookingFilter(
        reference=q.reference,
        email=q.email,
        screening_id=q.screening_id,
        status=None if q.status is None else BookingStatus(q.status),
        limit=q.limit,
        offset=q.offset,
    )
    found = await request.app[BOXOFFICE].find(search)
    return json_response([staff_booking_json(f) for f in found])


async def booking_detail(request: web.Request, given: Inputs[None, None]) -> web.Response:
    detail = await request.app[BOXOFFICE].detail(path_id(request))
    return json_response(detail_json(detail))


async def check_in(request: web.Request, given: Inputs[CheckInIn, None]) -> web.Response:
    body = given.body
    admitted = await request.app[BOXOFFICE].check_in(body.code, given.user_id, body.screening_id)
    assert admitted.checked_in_at is not None
    return json_response(
        {
            "booking_id": admitted.booking_id,
            "screening_id": admitted.screening_id,
            "seat_id": admitted.seat_id,
            "ticket_type": admitted.ticket_type,
            "checked_in_at": admitted.checked_in_at.isoformat(),
        }
    )
