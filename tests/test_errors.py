"""One JSON error shape for everything that goes wrong, and never a 500 for bad input."""

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
