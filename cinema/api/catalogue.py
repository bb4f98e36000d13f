"""Movies, halls and screenings: staff writes under /api/admin/, public reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cinema.api.io import Inputs, json_response, path_id
from cinema.api.keys import BOOKINGS, CATALOGUE
from cinema.api.schemas import HallIn, MovieIn, PageQuery, ScreeningIn, ScreeningsQuery
from cinema.booking.model import SeatMapEntry, SeatStatus
from cinema.catalogue.model import Hall, Movie, Screening
from cinema.money import format_minor
from cinema.pricing.model import FeesSpec, TicketType, TicketTypeSpec


def movie_json(movie: Movie) -> dict[str, Any]:
    return {
        "id": movie.id,
        "title": movie.title,
        "description": movie.description,
        "duration_minutes": movie.duration_minutes,
    }


def hall_json(hall: Hall) -> dict[str, Any]:
    return {
        "id": hall.id,
        "name": hall.name,
        "layout": hall.layout,
        "seat_count": hall.seat_count,
        "categories": list(hall.categories),
        "fees": _hall_fees_json(hall.default_fees),
    }


def _hall_fees_json(fees: FeesSpec | None) -> dict[str, Any] | None:
    if fees is None:
        return None
    return {
        "per_ticket": None if fees.per_ticket is None else str(fees.per_ticket),
        "percent": None if fees.percent is None else str(fees.percent),
    }


def _ticket_type_json(t: TicketType, currency: str) -> dict[str, Any]:
    return {
        "code": t.code,
        "name": t.name,
        "prices": None
        if t.prices is None
        else {c: format_minor(p, currency) for c, p in t.prices.items()},
        "discount": format_minor(t.discount, currency) if t.discount else None,
        "min_age_note": t.min_age_note,
        "max_per_booking": t.max_per_booking,
    }


def screening_json(screening: Screening) -> dict[str, Any]:
    currency, fees = screening.currency, screening.fees
    return {
        "id": screening.id,
        "movie_id": screening.movie_id,
        "hall_id": None if screening.general_admission else screening.hall_id,
        "capacity": screening.capacity,
        "starts_at": screening.starts_at.isoformat(),
        "prices": {c: format_minor(p, currency) for c, p in screening.prices.items()},
        "currency": currency,
        "ticket_types": [_ticket_type_json(t, currency) for t in screening.ticket_types],
        "fees": None
        if fees.empty
        else {"per_ticket": format_minor(fees.per_ticket, currency), "percent": str(fees.percent)},
        "max_tickets_per_customer": screening.max_tickets_per_customer,
        "cancelled": screening.cancelled_at is not None,
        "cancelled_at": None
        if screening.cancelled_at is None
        else screening.cancelled_at.isoformat(),
        "cancel_reason": screening.cancel_reason,
    }


async def create_movie(request: web.Request, given: Inputs[MovieIn, None]) -> web.Response:
    body = given.body
    movie = await request.app[CATALOGUE].add_movie(
        body.title, body.description, body.duration_minutes
    )
    return json_response(movie_json(movie), status=201)


async def create_hall(request: web.Request, given: Inputs[HallIn, None]) -> web.Response:
    body = given.body
    fees = None if body.fees is None else FeesSpec(body.fees.per_ticket, body.fees.percent)
    hall = await request.app[CATALOGUE].add_hall(body.name, body.layout, fees)
    return json_response(hall_json(hall), status=201)


async def list_halls(request: web.Request, given: Inputs[None, None]) -> web.Response:
    halls = await request.app[CATALOGUE].halls()
    return json_response([hall_json(h) for h in halls])


async def get_hall(request: web.Request, given: Inputs[None, None]) -> web.Response:
    return json_response(hall_json(await request.app[CATALOGUE].hall(path_id(request))))


async def create_screening(request: web.Request, given: Inputs[ScreeningIn, None]) -> web.Response:
    body = given.body
    types = None
    if body.ticket_types is not None:
        types = [
            TicketTypeSpec(t.code, t.name, t.prices, t.discount, t.min_age_note, t.max_per_booking)
            for t in body.ticket_types
        ]
    fees = None if body.fees is None else FeesSpec(body.fees.per_ticket, body.fees.percent)
    screening = await request.app[CATALOGUE].add_screening(
        body.movie_id,
        body.hall_id,
        body.starts_at,
        dict(body.prices),
        body.currency,
        types,
        fees,
        capacity=body.capacity,
        max_tickets_per_customer=body.max_tickets_per_customer,
    )
    return json_response(screening_json(screening), status=201)


async def list_movies(request: web.Request, given: Inputs[None, PageQuery]) -> web.Response:
    query = given.query
    movies = await request.app[CATALOGUE].movies(query.limit, query.offset)
    return json_response([movie_json(m) for m in movies])


async def get_movie(request: web.Request, given: Inputs[None, None]) -> web.Response:
    return json_response(movie_json(await request.app[CATALOGUE].movie(path_id(request))))


async def list_screenings(
    request: web.Request, given: Inputs[None, ScreeningsQuery]
) -> web.Response:
    query = given.query
    screenings = await request.app[CATALOGUE].screenings(
        query.movie_id, datetime.now(UTC), query.limit, query.offset, query.include_cancelled
    )
    return json_response([screening_json(s) for s in screenings])


async def get_screening(request: web.Request, given: Inputs[None, None]) -> web.Response:
    screening = await request.app[CATALOGUE].screening(path_id(request))
    return json_response(screening_json(screening))


# Seat-map entries are immutable and reused across reads (cinema/booking/seatmap.py), so
# each one's JSON object is built once: a 500-seat map is then a list of lookups, and
# orjson writes plain dicts about ten times faster than dataclasses holding enums.
_SEAT_JSON: dict[int, tuple[SeatMapEntry, dict[str, Any]]] = {}
_SEAT_JSON_LIMIT = 200_000


def _seat_json(entry: SeatMapEntry) -> dict[str, Any]:
    cached = _SEAT_JSON.get(id(entry))
    if cached is not None and cached[0] is entry:
        return cached[1]
    if len(_SEAT_JSON) >= _SEAT_JSON_LIMIT:
        _SEAT_JSON.clear()
    body = {
        "id": entry.id,
        "row": entry.row,
        "seat": entry.seat,
        "category": entry.category,
        "status": entry.status.value,
    }
    _SEAT_JSON[id(entry)] = (entry, body)  # holding the entry keeps its id from being reused
    return body


async def seat_map(request: web.Request, given: Inputs[None, None]) -> web.Response:
    seat_map = await request.app[BOOKINGS].seat_map(path_id(request))
    counts = seat_map.counts()
    return json_response(
        {
            "screening_id": seat_map.screening_id,
            "seats": [_seat_json(entry) for entry in seat_map.seats],
            "counts": {
                "available": counts[SeatStatus.AVAILABLE],
                "locked": counts[SeatStatus.LOCKED],
                "sold": counts[SeatStatus.SOLD],
            },
        }
    )
