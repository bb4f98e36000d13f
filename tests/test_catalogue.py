"""Staff create movies, halls and screenings; everyone reads them."""

from datetime import UTC, datetime, timedelta

import pytest


async def test_movie_create_and_read(api):
    created = await api.post(
        "/api/admin/movies/",
        {"title": "Heat", "description": "LA crime", "duration_minutes": 170},
        token=api.staff_token,
    )
    assert created.status == 201
    movie_id = created.body["id"]
    assert created.body == {
        "id": movie_id,
        "title": "Heat",
        "description": "LA crime",
        "duration_minutes": 170,
    }
    assert (await api.get(f"/api/movies/{movie_id}/")).body == created.body
    listed = await api.get("/api/movies/")
    assert created.body in listed.body
    assert (await api.get("/api/movies/999999999/")).status == 404


async def test_hall_with_full_layout(api):
    layout = {
        "rows": [
            {"label": "A", "seats": [{"number": 1, "category": "accessible"}, None, 2, 3]},
            {"label": "B", "category": "vip", "seats": 2},
        ]
    }
    hall = await api.post(
        "/api/admin/halls/", {"name": "Studio", "layout": layout}, token=api.staff_token
    )
    assert hall.status == 201
    assert hall.body["seat_count"] == 5
    assert hall.body["categories"] == ["accessible", "standard", "vip"]
    assert hall.body["layout"]["rows"][0]["seats"][1] is None


@pytest.mark.parametrize(
    ("layout", "reason"),
    [
        ({"rows": [{"label": "A", "seats": 2}, {"label": "A", "seats": 2}]}, "more than once"),
        ({"rows": []}, "rows"),
        ({"rows": [{"label": "A", "seats": 100_000}]}, "seats"),
        ({"rows": [{"label": "A", "seats": [None]}]}, "no seats"),
    ],
)
async def test_invalid_layout_is_400_with_reason(api, layout, reason):
    reply = await api.post(
        "/api/admin/halls/", {"name": "Bad", "layout": layout}, token=api.staff_token
    )
    assert reply.status == 400
    assert reason in reply.body["error"]["message"]


async def test_screening_lists_upcoming_first_and_filters_by_movie(api):
    first = await api.new_screening(starts_in=timedelta(days=2))
    second = await api.new_screening(starts_in=timedelta(hours=2))
    listed = await api.get("/api/screenings/")
    ids = [s["id"] for s in listed.body]
    assert ids.index(second.id) < ids.index(first.id)

    one = await api.get(f"/api/screenings/{first.id}/")
    assert one.status == 200
    by_movie = await api.get(f"/api/screenings/?movie_id={one.body['movie_id']}")
    assert [s["id"] for s in by_movie.body] == [first.id]
    assert (await api.get("/api/screenings/?movie_id=abc")).status == 400


async def test_screening_validation(api):
    movie = await api.post(
        "/api/admin/movies/", {"title": "M", "duration_minutes": 90}, token=api.staff_token
    )
    hall = await api.post(
        "/api/admin/halls/",
        {"name": "H", "layout": {"rows": [{"label": "A", "seats": 2, "category": "vip"}]}},
        token=api.staff_token,
    )
    base = {
        "movie_id": movie.body["id"],
        "hall_id": hall.body["id"],
        "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "prices": {"vip": "20.00"},
        "currency": "EUR",
    }
    ok = await api.post("/api/admin/screenings/", base, token=api.staff_token)
    assert ok.status == 201
    assert ok.body["prices"] == {"vip": "20.00"}
    assert ok.body["currency"] == "eur"

    cases = [
        ({"prices": {"standard": "10.00"}}, 400),  # the hall's vip seats would have no price
        ({"prices": {"vip": "-1"}}, 400),
        ({"prices": {"vip": "1.001"}}, 400),
        ({"starts_at": "2030-01-01T10:00:00"}, 400),  # no timezone
        ({"starts_at": "tomorrow"}, 400),
        ({"starts_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}, 400),
        ({"currency": "euro"}, 400),
        ({"movie_id": 999999999}, 404),
        ({"hall_id": 999999999}, 404),
    ]
    for change, status in cases:
        reply = await api.post("/api/admin/screenings/", {**base, **change}, token=api.staff_token)
        assert reply.status == status, (change, reply)
        assert "error" in reply.body


async def test_seat_map_shape_and_order(api):
    screening = await api.new_screening(
        layout={"rows": [{"label": "B", "seats": [2, None, 1]}, {"label": "A", "seats": 2}]}
    )
    reply = await api.get(f"/api/screenings/{screening.id}/seats/")
    assert reply.status == 200
    assert reply.body["screening_id"] == screening.id
    # ordered by row (as the layout lists them) then seat number
    assert [(s["row"], s["seat"]) for s in reply.body["seats"]] == [
        ("B", 1),
        ("B", 2),
        ("A", 1),
        ("A", 2),
    ]
    assert set(reply.body["seats"][0]) == {"id", "row", "seat", "category", "status"}
    assert reply.body["counts"] == {"available": 4, "locked": 0, "sold": 0}
    assert (await api.get("/api/screenings/999999999/seats/")).status == 404


async def test_a_cancelled_screening_is_off_sale_but_still_answers(api, pool):
    """Cancelled: gone from the public lists (also a movie's), still readable by id and saying
    so (read fresh, though this process cached its snapshot), listed for staff on request,
    and every booking of it, seated or general admission, is 409 screening_cancelled."""
    seated = await api.new_screening()
    ga = await api.new_ga_screening(capacity=5)
    kept = await api.new_screening()
    buyer = await api.new_user()
    first = await api.book(buyer, seated.id, [seated.seat_ids[0]])  # caches the snapshot
    assert first.status == 201, first
    movie_id = (await api.get(f"/api/screenings/{seated.id}/")).body["movie_id"]
    for sid in (seated.id, ga):
        reply = await api.post(
            f"/api/admin/screenings/{sid}/cancel", {"reason": "flooded"}, token=api.staff_token
        )
        assert reply.status == 202, reply

    listed = {s["id"] for s in (await api.get("/api/screenings/?limit=500")).body}
    assert kept.id in listed and not {seated.id, ga} & listed
    of_movie = (await api.get(f"/api/screenings/?movie_id={movie_id}")).body
    assert of_movie == []
    staff = (await api.get("/api/screenings/?limit=500&include_cancelled=true")).body
    flags = {s["id"]: (s["cancelled"], s["cancel_reason"]) for s in staff}
    assert flags[seated.id] == flags[ga] == (True, "flooded")
    assert flags[kept.id] == (False, None)

    one = await api.get(f"/api/screenings/{seated.id}/")
    assert one.status == 200 and one.body["cancelled"] is True
    assert one.body["cancel_reason"] == "flooded" and one.body["cancelled_at"]
    assert (await api.get(f"/api/screenings/{kept.id}/")).body["cancelled"] is False

    late = await api.book(await api.new_user(), seated.id, [seated.seat_ids[1]])
    assert late.status == 409 and late.body["error"]["code"] == "screening_cancelled", late
    late_ga = await api.book_places(await api.new_user(), ga, 1)
    assert late_ga.status == 409 and late_ga.body["error"]["code"] == "screening_cancelled"
    after = await pool.fetchval(
        "SELECT count(*) FROM bookings b JOIN screenings s ON s.id = b.screening_id"
        " WHERE s.id = ANY($1::bigint[]) AND b.created_at >= s.cancelled_at",
        [seated.id, ga],
    )
    assert after == 0
