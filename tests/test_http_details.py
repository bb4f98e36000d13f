"""HTTP details a client or a load balancer trips over: HEAD wherever GET is served (RFC 9110),
both spellings of every path (with and without the trailing slash), and query parameters a
list endpoint does not know (tracking tags, cache busters) ignored rather than refused."""

from __future__ import annotations

import re

import pytest

from cinema.api.health import HEALTH_ROUTES
from cinema.api.openapi import openapi_path
from cinema.api.routes import ROUTES
from cinema.app import init_app
from cinema.settings import Settings
from tests.client import ApiClient
from tests.conftest import JWT_SECRET

# A live stream (route.stream) never ends: tests/test_live.py checks its HEAD.
GET_ROUTES = [r for r in ROUTES + HEALTH_ROUTES if r.method == "GET" and not r.stream]


async def _ids(api: ApiClient, token: str) -> dict[str, int]:
    """An existing id for each kind of path parameter in the table."""
    screening = await api.new_screening()
    movie_id = (await api.get(f"/api/screenings/{screening.id}/")).body["movie_id"]
    booking = await api.book(token, screening.id, screening.seat_ids[:1])
    assert booking.status == 201, booking
    promo = await api.post(
        "/api/admin/promo-codes/",
        {"code": f"HEAD{booking.body['id']}", "kind": "percent", "value": "10", "max_uses": 1},
        token=api.staff_token,
    )
    assert promo.status == 201, promo
    return {
        "/api/movies/": movie_id,
        "/api/admin/halls/": screening.hall_id,
        "/api/halls/": screening.hall_id,
        "/api/screenings/": screening.id,
        "/api/admin/screenings/": screening.id,  # its sales report
        "/api/bookings/": booking.body["id"],
        "/api/admin/bookings/": booking.body["id"],
        "/api/admin/promo-codes/": promo.body["id"],
    }


def _concrete(path: str, ids: dict[str, int]) -> str:
    path = openapi_path(path)
    if "{id}" not in path:
        return path
    prefix = path.split("{id}")[0]
    return path.replace("{id}", str(ids[prefix]))


async def test_every_get_route_answers_head_with_headers_and_no_body(api, users):
    token = await users.one()
    ids = await _ids(api, token)
    assert len(GET_ROUTES) >= 10  # the table, not a hand-picked few
    for route in GET_ROUTES:
        path = _concrete(route.path, ids)
        staff = api.staff_token
        caller = {"user": token, "staff": staff, "admin": staff, "box_office": staff}.get(
            route.access
        )
        got = await api.get(path, token=caller)
        head = await api.request("HEAD", path, token=caller)
        assert got.status == 200, (path, got)
        assert head.status == 200, (path, head)
        assert head.body is None, (path, head)  # headers only
        assert head.headers["Content-Type"] == got.headers["Content-Type"], path
        assert "X-Request-ID" in head.headers


@pytest.mark.parametrize("path", ["/health", "/health/", "/ready", "/ready/"])
async def test_load_balancer_probes_answer_head(api, path):
    reply = await api.request("HEAD", path)
    assert reply.status == 200 and reply.body is None, reply


async def test_head_on_a_user_route_still_needs_a_token(api):
    reply = await api.request("HEAD", "/api/bookings/")
    assert reply.status == 401


@pytest.mark.parametrize("slash", ["", "/"])
async def test_auth_routes_answer_with_and_without_the_trailing_slash(api, slash):
    email = f"slash{len(slash)}-{id(api)}@example.com"
    credentials = {"email": email, "password": "correct horse battery"}
    registered = await api.post(f"/api/auth/register{slash}", credentials)
    assert registered.status == 201, registered
    login = await api.post(f"/api/auth/token{slash}", credentials)
    assert login.status == 200, login
    mine = await api.get("/api/my-bookings", token=login.body["access_token"])
    assert mine.status == 200 and mine.body == []


def test_every_path_of_the_table_is_served_with_and_without_its_slash():
    app = init_app(Settings(_env_file=None, jwt_secret=JWT_SECRET))  # type: ignore[call-arg]
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    for route in ROUTES + HEALTH_ROUTES:
        bare = openapi_path(route.path).rstrip("/")
        for path in (bare, bare + "/"):
            assert (route.method, path) in served
            if route.method == "GET":
                assert ("HEAD", path) in served


@pytest.mark.parametrize("path", ["/api/movies/", "/api/screenings/", "/api/my-bookings/"])
async def test_unknown_query_parameters_are_ignored(api, users, path):
    token = await users.one()
    plain = await api.get(path, token=token)
    tagged = await api.get(f"{path}?utm_source=newsletter&_=1712345678", token=token)
    assert plain.status == 200, plain
    assert tagged.status == 200, tagged
    assert tagged.body == plain.body


@pytest.mark.parametrize(
    "query", ["limit=0&utm_source=x", "offset=-1&utm_source=x", "limit=many&fbclid=abc"]
)
async def test_known_query_parameters_are_still_validated(api, users, query):
    token = await users.one()
    for path in ("/api/movies/", "/api/bookings/"):
        reply = await api.get(f"{path}?{query}", token=token)
        assert reply.status == 400, (path, reply)
        assert reply.body["error"]["code"] == "validation_error"
        assert not re.search(r"utm_source|fbclid", reply.body["error"]["message"])


async def test_my_bookings_is_the_bookings_list(api, users):
    token = await users.one()
    screening = await api.new_screening()
    booked = await api.book(token, screening.id, screening.seat_ids[:1])
    reference = booked.body["reference"]
    for path in ("/api/bookings/", "/api/my-bookings/"):
        everything = await api.get(path, token=token)
        found = await api.get(f"{path}?reference={reference}", token=token)
        assert [b["id"] for b in everything.body] == [booked.body["id"]]
        assert [b["id"] for b in found.body] == [booked.body["id"]]
