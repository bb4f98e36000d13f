"""A hall's default fees (issue 12 item 3, "or venue default"): a screening created in the
hall without its own `fees` gets them, in its own currency; its own `fees` win; the
booking's totals use them (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.client import ApiClient
from tests.conftest import Users

DEFAULT = {"per_ticket": "0.50", "percent": "3"}


async def _hall(api: ApiClient, **extra: Any) -> dict[str, Any]:
    hall = await api.post(
        "/api/admin/halls/",
        {"name": "Venue", "layout": {"rows": [{"label": "A", "seats": 4}]}, **extra},
        token=api.staff_token,
    )
    assert hall.status == 201, hall
    return dict(hall.body)


async def _screening(api: ApiClient, hall_id: int, currency: str = "eur", **extra: Any) -> Any:
    movie = await api.post(
        "/api/admin/movies/", {"title": "M", "duration_minutes": 90}, token=api.staff_token
    )
    return await api.post(
        "/api/admin/screenings/",
        {
            "movie_id": movie.body["id"],
            "hall_id": hall_id,
            "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "prices": {"standard": "10.00" if currency != "jpy" else "1000"},
            "currency": currency,
            **extra,
        },
        token=api.staff_token,
    )


async def test_a_screening_without_fees_takes_its_halls_default(
    api: ApiClient, users: Users
) -> None:
    hall = await _hall(api, fees=DEFAULT)
    assert hall["fees"] == {"per_ticket": "0.50", "percent": "3"}
    shown = await api.get(f"/api/admin/halls/{hall['id']}/", token=api.staff_token)
    assert shown.body["fees"] == hall["fees"]
    screening = await _screening(api, hall["id"])
    assert screening.status == 201, screening
    assert screening.body["fees"] == {"per_ticket": "0.50", "percent": "3"}
    seats = await api.get(f"/api/screenings/{screening.body['id']}/seats/")
    booked = await api.book(
        await users.one(), screening.body["id"], [s["id"] for s in seats.body["seats"][:2]]
    )
    assert booked.status == 201, booked
    # 2 x 10.00 = 20.00; fees 2 x 0.50 + 3 % of 20.00 = 1.60
    assert (booked.body["subtotal"], booked.body["fees"], booked.body["total"]) == (
        "20.00",
        "1.60",
        "21.60",
    )


async def test_own_fees_win_and_no_default_means_none(api: ApiClient) -> None:
    hall = await _hall(api, fees=DEFAULT)
    own = await _screening(api, hall["id"], fees={"per_ticket": "1.00"})
    assert own.status == 201 and own.body["fees"]["per_ticket"] == "1.00", own
    assert own.body["fees"]["percent"] in ("0", "0.00")
    free = await _screening(api, hall["id"], fees={})
    assert free.status == 201 and free.body["fees"] is None, free
    plain = await _hall(api)
    assert plain["fees"] is None
    none = await _screening(api, plain["id"])
    assert none.status == 201 and none.body["fees"] is None, none


async def test_a_default_that_does_not_fit_the_currency_is_refused(api: ApiClient) -> None:
    hall = await _hall(api, fees={"per_ticket": "0.50"})
    yen = await _screening(api, hall["id"], currency="jpy")
    assert yen.status == 400, yen
    assert yen.body["error"]["code"] == "invalid_screening"
    assert "default fees" in yen.body["error"]["message"]
    bad = await api.post(
        "/api/admin/halls/",
        {"name": "V", "layout": {"rows": [{"label": "A", "seats": 1}]}, "fees": {"percent": "101"}},
        token=api.staff_token,
    )
    assert bad.status == 400 and bad.body["error"]["code"] == "validation_error", bad
