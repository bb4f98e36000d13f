"""Ticket types, fees, line items and totals through the API (real PostgreSQL and Redis)."""

from __future__ import annotations

from typing import Any

import pytest

TWO_CATEGORIES = {
    "rows": [{"label": "A", "seats": 4}, {"label": "B", "seats": 4, "category": "vip"}]
}
PER_TICKET = {"kwd": "0.500", "jpy": "50", "eur": "0.50"}
TYPES = [
    {"code": "adult", "name": "Adult"},
    {"code": "child", "name": "Child", "discount": "3.00", "max_per_booking": 2},
    {"code": "student", "name": "Student", "prices": {"standard": "8.00", "vip": "12.00"}},
]


async def _show(api: Any, currency: str = "eur", **prices: str) -> Any:
    return await api.new_screening(
        layout=TWO_CATEGORIES,
        prices=prices or {"standard": "10.00", "vip": "15.00"},
        currency=currency,
        ticket_types=TYPES,
        fees={"per_ticket": "0.50", "percent": "3"},
    )


async def test_screening_echoes_ticket_types_and_fees(api: Any) -> None:
    show = await _show(api)
    body = (await api.get(f"/api/screenings/{show.id}/")).body
    assert body["ticket_types"] == [
        {"code": "adult", "name": "Adult", "prices": None, "discount": None,
         "min_age_note": None, "max_per_booking": None},
        {"code": "child", "name": "Child", "prices": None, "discount": "3.00",
         "min_age_note": None, "max_per_booking": 2},
        {"code": "student", "name": "Student", "prices": {"standard": "8.00", "vip": "12.00"},
         "discount": None, "min_age_note": None, "max_per_booking": None},
    ]  # fmt: skip
    assert body["fees"] == {"per_ticket": "0.50", "percent": "3"}
    plain = await api.new_screening()
    plain_body = (await api.get(f"/api/screenings/{plain.id}/")).body
    assert [t["code"] for t in plain_body["ticket_types"]] == ["adult"]
    assert plain_body["fees"] is None


async def test_booking_lists_tickets_and_totals(api: Any, users: Any, pool: Any) -> None:
    show = await _show(api)
    standard, vip = show.seat_ids[0], show.seat_ids[4]
    token = await users.one()
    reply = await api.book_with(
        token,
        show.id,
        seats=[
            {"seat_id": vip, "ticket_type": "child"},
            {"seat_id": standard, "ticket_type": "adult"},
            {"seat_id": show.seat_ids[5], "ticket_type": "student"},
        ],
    )
    assert reply.status == 201, reply
    body = reply.body
    assert body["tickets"] == [
        {"seat_id": standard, "category": "standard", "ticket_type": "adult",
         "price": "10.00", "price_minor": 1000},
        {"seat_id": vip, "category": "vip", "ticket_type": "child",
         "price": "12.00", "price_minor": 1200},
        {"seat_id": show.seat_ids[5], "category": "vip", "ticket_type": "student",
         "price": "12.00", "price_minor": 1200},
    ]  # fmt: skip
    # 34.00 + 3 x 0.50 + 3% of 34.00
    assert (body["subtotal"], body["discount"], body["fees"], body["total"]) == (
        "34.00", "0.00", "2.52", "36.52"
    )  # fmt: skip
    assert body["total_minor"] == body["amount_minor"] == 3652
    assert body["amount"] == "36.52"
    again = await api.get(f"/api/bookings/{body['id']}/", token=token)
    assert again.body == body
    row = await pool.fetchrow(
        "SELECT amount, subtotal_minor, discount_minor, fees_minor FROM bookings WHERE id = $1",
        body["id"],
    )
    assert tuple(row) == (3652, 3400, 0, 252)
    stored = await pool.fetch(
        "SELECT ticket_type, price_minor FROM reservations WHERE booking_id = $1 ORDER BY seat_id",
        body["id"],
    )
    assert [tuple(r) for r in stored] == [("adult", 1000), ("child", 1200), ("student", 1200)]


async def test_seat_ids_still_book_the_default_type(api: Any, users: Any) -> None:
    show = await api.new_screening(prices={"standard": "12.50"})
    reply = await api.book(await users.one(), show.id, show.seat_ids[:2])
    assert reply.status == 201, reply
    assert [t["ticket_type"] for t in reply.body["tickets"]] == ["adult", "adult"]
    assert (reply.body["subtotal"], reply.body["fees"], reply.body["total"]) == (
        "25.00", "0.00", "25.00"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("currency", "prices", "total", "total_minor"),
    [
        ("jpy", {"standard": "1800", "vip": "2500"}, "1904", 1904),  # 1800 + 50 + 54
        ("eur", {"standard": "10.00", "vip": "15.00"}, "10.80", 1080),  # 10.00 + 0.50 + 0.30
        # 12.500 + 0.500 + 0.375 = 13.375, charged in steps of 0.010 (Stripe): 13.380
        ("kwd", {"standard": "12.500", "vip": "20.000"}, "13.380", 13380),
    ],
)
async def test_totals_in_zero_and_three_decimal_currencies(
    api: Any, users: Any, currency: str, prices: dict[str, str], total: str, total_minor: int
) -> None:
    show = await api.new_screening(
        layout=TWO_CATEGORIES,
        prices=prices,
        currency=currency,
        fees={"per_ticket": PER_TICKET[currency], "percent": "3"},
    )
    reply = await api.book(await users.one(), show.id, [show.seat_ids[0]])
    assert reply.status == 201, reply
    assert (reply.body["total"], reply.body["total_minor"]) == (total, total_minor)


async def test_a_type_over_its_limit_or_unknown_is_refused_and_nothing_is_written(
    api: Any, users: Any, pool: Any
) -> None:
    show = await _show(api)
    token = await users.one()
    over = await api.book_with(
        token, show.id, seats=[{"seat_id": s, "ticket_type": "child"} for s in show.seat_ids[:3]]
    )
    assert over.status == 400, over
    assert over.body["error"]["code"] == "ticket_type_limit_exceeded"
    unknown = await api.book_with(
        token, show.id, seats=[{"seat_id": show.seat_ids[0], "ticket_type": "senior"}]
    )
    assert unknown.status == 400, unknown
    assert unknown.body["error"]["code"] == "unknown_ticket_type"
    both = await api.book_with(
        token, show.id, seat_ids=[show.seat_ids[0]], seats=[{"seat_id": show.seat_ids[1]}]
    )
    assert both.status == 400 and both.body["error"]["code"] == "validation_error", both
    neither = await api.book_with(token, show.id)
    assert neither.status == 400 and neither.body["error"]["code"] == "validation_error", neither
    assert (
        await pool.fetchval("SELECT count(*) FROM bookings WHERE screening_id = $1", show.id) == 0
    )


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"currency": "xyz"}, "invalid_screening"),
        ({"currency": "xau"}, "invalid_screening"),
        (
            {
                "ticket_types": [
                    {"code": "kid", "name": "Kid", "discount": "1", "prices": {"standard": "1"}}
                ]
            },
            "invalid_screening",
        ),
        (
            {"ticket_types": [{"code": "kid", "name": "Kid", "prices": {"imax": "1"}}]},
            "invalid_screening",
        ),
        (
            {"ticket_types": [{"code": "a", "name": "A"}, {"code": "A", "name": "B"}]},
            "invalid_screening",
        ),
        ({"ticket_types": [{"code": "kid", "name": "Kid", "discount": "-1"}]}, "validation_error"),
        ({"ticket_types": [{"code": "kid", "name": "Kid", "discount": "1e9"}]}, "validation_error"),
        ({"ticket_types": [{"code": "k i d", "name": "Kid"}]}, "validation_error"),
        ({"ticket_types": []}, "validation_error"),
        ({"fees": {"percent": "101"}}, "validation_error"),
        ({"fees": {"per_ticket": "-0.50"}}, "validation_error"),
        ({"fees": {"per_ticket": "NaN"}}, "validation_error"),
        ({"prices": {"standard": "12.345"}, "currency": "kwd"}, "invalid_screening"),
    ],
)
async def test_bad_offers_are_refused(api: Any, fields: dict[str, Any], code: str) -> None:
    movie = await api.post(
        "/api/admin/movies/", {"title": "M", "duration_minutes": 90}, token=api.staff_token
    )
    hall = await api.post(
        "/api/admin/halls/",
        {"name": "H", "layout": {"rows": [{"label": "A", "seats": 2}]}},
        token=api.staff_token,
    )
    body = {
        "movie_id": movie.body["id"],
        "hall_id": hall.body["id"],
        "starts_at": "2099-01-01T20:00:00Z",
        "prices": {"standard": "10.00"},
        "currency": "eur",
        **fields,
    }
    reply = await api.post("/api/admin/screenings/", body, token=api.staff_token)
    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == code
