"""One JSON error shape for everything that goes wrong, and never a 500 for bad input."""

import json

import pytest


def assert_error(reply, status, code):
    assert reply.status == status, reply
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body["error"]["code"] == code
    assert reply.body["error"]["message"]


async def test_unknown_route(api):
    assert_error(await api.get("/api/nothing-here/"), 404, "not_found")


async def test_wrong_method(api):
    reply = await api.request("PATCH", "/api/movies/")
    assert_error(reply, 405, "method_not_allowed")
    assert "GET" in reply.headers["Allow"]


async def test_non_numeric_and_huge_ids_are_404(api):
    assert_error(await api.get("/api/movies/abc/"), 404, "not_found")
    assert_error(await api.get(f"/api/movies/{10**30}/"), 404, "not_found")
    assert_error(await api.get(f"/api/screenings/{2**63}/seats/"), 404, "not_found")


async def test_paths_work_without_trailing_slash(api):
    assert (await api.get("/api/movies")).status == 200


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed_json"),
        ("", "application/json", 400, "malformed_json"),
        ('{"screening_id": 1, "seat_ids": [1]}', "text/plain", 415, "unsupported_media_type"),
        ("[1, 2]", "application/json", 400, "validation_error"),
        ("null", "application/json", 400, "validation_error"),
        ('"\\ud800"', "application/json", 400, "malformed_json"),
        (b"\xff\xfe", "application/json", 400, "malformed_json"),
    ],
)
async def test_malformed_bodies(api, users, data, content_type, status, code):
    token = await users.one()
    reply = await api.request(
        "POST", "/api/bookings/", data=data, token=token, headers={"Content-Type": content_type}
    )
    assert_error(reply, status, code)


async def test_oversized_body_is_413(api, users):
    token = await users.one()
    reply = await api.request(
        "POST",
        "/api/bookings/",
        data=b"[" + b"1," * 1_000_000 + b"1]",
        token=token,
        headers={"Content-Type": "application/json"},
    )
    assert_error(reply, 413, "payload_too_large")


async def test_nul_in_text_is_400_not_500(api):
    reply = await api.post(
        "/api/admin/movies/",
        {"title": "bad\u0000title", "duration_minutes": 90},
        token=api.staff_token,
    )
    assert_error(reply, 400, "validation_error")


# Words of pydantic, PyJWT or Python that must never reach a client.
INTERNALS = (
    "Input should",
    "String should",
    "List should",
    "Value error",
    "should match pattern",
    "pydantic",
    "errors.pydantic.dev",
    "^",
    "$",
    "Traceback",
    "padding",
)


def assert_human(reply):
    text = json.dumps(reply.body)
    leaked = [word for word in INTERNALS if word in text]
    assert not leaked, (leaked, reply.body)


async def test_validation_messages_are_short_and_human_per_field(api, users):
    token = await users.one()
    reply = await api.post("/api/bookings/", {"screening_id": 0, "seat_ids": []}, token=token)
    assert_error(reply, 400, "validation_error")
    assert reply.body["error"]["details"] == [
        {"field": "screening_id", "message": "must be at least 1"},
        {"field": "seat_ids", "message": "must not be empty"},
    ]
    assert_human(reply)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/bookings/", {"screening_id": "one", "seat_ids": [1] * 11}),
        ("/api/bookings/", {"screening_id": 1, "seat_ids": [1], "extra": True}),
        ("/api/bookings/", [1, 2]),
        ("/api/auth/register", {"email": "not-an-email", "password": "short"}),
        ("/api/auth/register", {"email": 5, "password": None}),
        ("/api/admin/movies/", {"title": "", "duration_minutes": 1.5}),
        ("/api/admin/movies/", {"title": "x" * 300, "duration_minutes": 10**9}),
        (
            "/api/admin/screenings/",
            {
                "movie_id": 1,
                "hall_id": 1,
                "starts_at": "tomorrow",
                "prices": {"standard": "1.23456"},
                "currency": "EURO",
            },
        ),
        (
            "/api/admin/screenings/",
            {
                "movie_id": 1,
                "hall_id": 1,
                "starts_at": "2030-01-01T20:00:00",
                "prices": {},
                "currency": "usd",
            },
        ),
        ("/api/admin/halls/", {"name": "H", "layout": {"rows": "many"}}),
    ],
)
async def test_no_bad_body_leaks_pydantic_wording(api, users, path, body):
    token = api.staff_token if path.startswith("/api/admin/") else await users.one()
    reply = await api.post(path, body, token=token)
    assert_error(reply, 400, "validation_error")
    assert_human(reply)
    for detail in reply.body["error"]["details"]:
        assert detail["message"] and len(detail["message"]) <= 80, detail


@pytest.mark.parametrize(
    "query", ["limit=abc", "limit=0", "offset=-1", "reference=%21%21", "reference=" + "A" * 70]
)
async def test_no_bad_query_leaks_pydantic_wording(api, users, query):
    token = await users.one()
    reply = await api.get(f"/api/bookings/?{query}", token=token)
    assert_error(reply, 400, "validation_error")
    assert_human(reply)
