"""POST/GET/DELETE bookings; every booking is visible to its owner only."""

from __future__ import annotations

from typing import Any

import segno
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from cinema.api.errors import ApiError
from cinema.api.io import Inputs, json_response, path_id
from cinema.api.keys import BOOKINGS, BOXOFFICE
from cinema.api.schemas import BookingIn, BookingsQuery, IdempotencyKey
from cinema.booking.model import Booking, BookingStatus, Payment
from cinema.boxoffice.service import OwnerTicket
from cinema.money import format_minor

_IDEMPOTENCY_KEY = TypeAdapter(IdempotencyKey)


def payment_json(payment: Payment | None) -> dict[str, Any] | None:
    if payment is None:
        return None
    return {
        "provider": payment.provider,
        "payment_intent_id": payment.intent_id,
        "client_secret": payment.client_secret,
        "status": payment.status.value,
    }


def booking_json(booking: Booking) -> dict[str, Any]:
    currency = booking.currency
    subtotal = booking.subtotal_minor
    total = format_minor(booking.amount, currency)
    return {
        "id": booking.id,
        "reference": booking.reference,
        "status": booking.status.value,
        "screening_id": booking.screening_id,
        "seat_ids": [] if booking.general_admission else list(booking.seat_ids),
        "quantity": len(booking.seat_ids),
        "tickets": [
            {
                "seat_id": None if booking.general_admission else t.seat_id,
                "category": t.category,
                "ticket_type": t.ticket_type,
                "price": format_minor(t.price, currency),
                "price_minor": t.price,
            }
            for t in booking.tickets
        ],
        "subtotal": format_minor(subtotal, currency),
        "subtotal_minor": subtotal,
        "discount": format_minor(booking.discount, currency),
        "discount_minor": booking.discount,
        "fees": format_minor(booking.fees, currency),
        "fees_minor": booking.fees,
        "total": total,
        "total_minor": booking.amount,
        "amount": total,
        "amount_minor": booking.amount,
        "currency": currency,
        "promo_code": booking.promo_code,
        "expires_at": booking.expires_at.isoformat(),
        "cancel_reason": booking.cancel_reason,
        "created_at": booking.created_at.isoformat(),
        "updated_at": booking.updated_at.isoformat(),
        "payment": payment_json(booking.payment),
    }


def _idempotency_key(request: web.Request) -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    try:
        return _IDEMPOTENCY_KEY.validate_python(raw)
    except ValidationError:
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters"
        ) from None


async def create_booking(request: web.Request, given: Inputs[BookingIn, None]) -> web.Response:
    key = _idempotency_key(request)
    body = given.body
    result = await request.app[BOOKINGS].book(
        given.user_id,
        body.screening_id,
        body.ticket_requests(),
        key,
        body.promo_code,
        admission=given.admission,
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return json_response(booking_json(result.booking), status=201, headers=headers)


def _qr_svg(code: str | None) -> str | None:
    return None if code is None else segno.make(code, error="m").svg_data_uri(scale=4)


async def get_booking(request: web.Request, given: Inputs[None, None]) -> web.Response:
    """The owner's booking; a CONFIRMED one's tickets carry their door codes and QR codes."""
    booking = await request.app[BOOKINGS].booking_for(given.user_id, path_id(request))
    data = booking_json(booking)
    if booking.status is BookingStatus.CONFIRMED:
        owned = await request.app[BOXOFFICE].owner_tickets(booking)
        data["tickets"] = _with_codes(data["tickets"], owned, booking.general_admission)
    return json_response(data)


def _with_codes(
    lines: list[dict[str, Any]], owned: list[OwnerTicket], general_admission: bool = False
) -> list[dict[str, Any]]:
    """Each ticket line with its code: by seat, and general-admission places in order (a
    place is a seat row the answer does not name: both lists are in place order)."""
    by_seat = {} if general_admission else {t.seat_id: t for t in owned if t.seat_id is not None}
    places = iter(owned if general_admission else [t for t in owned if t.seat_id is None])
    merged = []
    for line in lines:
        seat_id = line.get("seat_id")
        ticket = by_seat.get(seat_id) if seat_id is not None else next(places, None)
        code = None if ticket is None else ticket.code
        checked_in = None if ticket is None else ticket.checked_in_at
        merged.append(
            {
                **line,
                "code": code,
                "checked_in_at": None if checked_in is None else checked_in.isoformat(),
                "qr_svg": _qr_svg(code),
            }
        )
    return merged


async def list_bookings(request: web.Request, given: Inputs[None, BookingsQuery]) -> web.Response:
    """My bookings, newest first; `?reference=ABCD1234` finds one of mine by its reference."""
    query = given.query
    service = request.app[BOOKINGS]
    if query.reference is not None:
        found = await service.booking_by_reference(given.user_id, query.reference)
        bookings = [] if found is None else [found]
    else:
        bookings = await service.bookings_of(given.user_id, query.limit, query.offset)
    return json_response([booking_json(b) for b in bookings])
