"""Refunds under /api/admin/ (box office and admins), the customer's own cancel, and the
cancellation of a whole screening (admins)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinema.api.bookings import booking_json
from cinema.api.desk import detail_json
from cinema.api.io import Inputs, json_response, path_id
from cinema.api.keys import BOXOFFICE, CANCELLATIONS, REFUNDS
from cinema.api.schemas import CancelScreeningIn, RefundIn
from cinema.money import format_minor
from cinema.refunds.model import Refund, RefundRequest, RefundSource


def refund_json(refund: Refund) -> dict[str, Any]:
    currency = refund.currency
    return {
        "id": refund.id,
        "amount": format_minor(refund.amount, currency),
        "amount_minor": refund.amount,
        "currency": currency,
        "reason": refund.reason,
        "source": refund.source.value,
        "status": refund.status.value,
        "provider_refund_id": refund.provider_refund_id,
        "requested_by": refund.requested_by,
        "created_at": refund.created_at.isoformat(),
        "items": [
            {
                "seat_id": i.seat_id,
                "amount": format_minor(i.amount, currency),
                "amount_minor": i.amount,
            }
            for i in refund.items
        ],
    }


async def refunded_booking_json(request: web.Request, booking_id: int) -> dict[str, Any]:
    """The staff view of a booking with its refunds (GET detail and the refund's answer)."""
    data = detail_json(await request.app[BOXOFFICE].detail(booking_id))
    refunds = await request.app[REFUNDS].refunds_of(booking_id)
    refunded = sum(r.amount for r in refunds)
    data["refunded"] = format_minor(refunded, data["currency"])
    data["refunded_minor"] = refunded
    data["refunds"] = [refund_json(r) for r in refunds]
    return data


async def refund_booking(request: web.Request, given: Inputs[RefundIn, None]) -> web.Response:
    body = given.body
    booking_id = path_id(request)
    await request.app[REFUNDS].refund(
        RefundRequest(
            booking_id,
            body.reason,
            RefundSource.STAFF,
            given.user_id,
            None if body.seat_ids is None else tuple(body.seat_ids),
        )
    )
    return json_response(await refunded_booking_json(request, booking_id))


async def booking_detail(request: web.Request, given: Inputs[None, None]) -> web.Response:
    return json_response(await refunded_booking_json(request, path_id(request)))


async def cancel_my_booking(request: web.Request, given: Inputs[None, None]) -> web.Response:
    """A PENDING booking is cancelled; a CONFIRMED one refunded in full (within the window)."""
    booking = await request.app[REFUNDS].cancel_by_customer(given.user_id, path_id(request))
    return json_response(booking_json(booking))


async def cancel_screening(
    request: web.Request, given: Inputs[CancelScreeningIn, None]
) -> web.Response:
    screening_id = path_id(request)
    reason = given.body.reason
    cancelled_at = await request.app[CANCELLATIONS].cancel(screening_id, reason)
    return json_response(
        {"screening_id": screening_id, "cancelled_at": cancelled_at.isoformat(), "reason": reason},
        status=202,
    )
