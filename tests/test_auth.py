"""Registration, login, and the JWT checks every protected endpoint relies on."""

import time

import jwt
import pytest

from tests.conftest import JWT_SECRET


async def test_register_then_login(api):
    reply = await api.post(
        "/api/auth/register", {"email": "Ann@Example.com", "password": "s3cret-pass"}
    )
    assert reply.status == 201
    assert reply.body["email"] == "Ann@Example.com"
    assert isinstance(reply.body["id"], int)
    assert "password" not in reply.body

    login = await api.post(
        "/api/auth/token", {"email": "ann@example.com", "password": "s3cret-pass"}
    )
    assert login.status == 200
    assert login.body["token_type"] == "bearer"
    assert login.body["expires_in"] > 0
    claims = jwt.decode(login.body["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(reply.body["id"])

    mine = await api.get("/api/my-bookings/", token=login.body["access_token"])
    assert mine.status == 200
    assert mine.body == []


async def test_password_is_stored_as_argon2(api, database_url):
    import asyncpg

    await api.post("/api/auth/register", {"email": "hash@example.com", "password": "s3cret-pass"})
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT password_hash FROM users WHERE email = 'hash@example.com'"
        )
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$")


async def test_email_taken_is_409(api):
    body = {"email": "twice@example.com", "password": "s3cret-pass"}
    assert (await api.post("/api/auth/register", body)).status == 201
    again = await api.post("/api/auth/register", {**body, "email": "TWICE@example.com"})
    assert again.status == 409
    assert again.body["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": "s3cret-pass"},
        {"email": "a@b.co", "password": "short"},
        {"email": "a@b.co"},
        {"email": "a@b.co", "password": "s3cret-pass", "is_staff": True},
        {"email": "nul\u0000@b.co", "password": "s3cret-pass"},
    ],
)
async def test_register_validates(api, body):
    reply = await api.post("/api/auth/register", body)
    assert reply.status == 400
    assert reply.body["error"]["code"] == "validation_error"


async def test_wrong_password_and_unknown_email_are_401(api):
    await api.post("/api/auth/register", {"email": "bob@example.com", "password": "s3cret-pass"})
    wrong = await api.post("/api/auth/token", {"email": "bob@example.com", "password": "nope-nope"})
    unknown = await api.post("/api/auth/token", {"email": "who@example.com", "password": "x"})
    for reply in (wrong, unknown):
        assert reply.status == 401
        assert reply.body["error"]["code"] == "invalid_credentials"


def _token(claims, key=JWT_SECRET, algorithm="HS256"):
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.mark.parametrize(
    "token",
    [
        # alg "none": unsigned
        jwt.encode(
            {"sub": "1", "iat": int(time.time()), "exp": int(time.time()) + 60},
            None,
            algorithm="none",
        ),
        # signed with another key
        _token({"sub": "1", "iat": int(time.time()), "exp": int(time.time()) + 60}, key="k" * 40),
        # expired
        _token({"sub": "1", "iat": int(time.time()) - 120, "exp": int(time.time()) - 60}),
        # HS512 with the right key is still the wrong algorithm
        _token(
            {"sub": "1", "iat": int(time.time()), "exp": int(time.time()) + 60}, algorithm="HS512"
        ),
        # no expiry
        _token({"sub": "1", "iat": int(time.time())}),
        "garbage",
    ],
    ids=["alg-none", "other-key", "expired", "hs512", "no-exp", "garbage"],
)
async def test_bad_tokens_are_401(api, token):
    reply = await api.get("/api/my-bookings/", token=token)
    assert reply.status == 401
    assert reply.body["error"]["code"] == "invalid_token"
    assert reply.headers.get("WWW-Authenticate") == "Bearer"


async def test_missing_token_is_401(api):
    reply = await api.post("/api/bookings/", {"screening_id": 1, "seat_ids": [1]})
    assert reply.status == 401
    assert reply.body["error"]["code"] == "not_authenticated"


async def test_staff_endpoints_refuse_customers(api, users):
    customer = await users.one()
    reply = await api.post(
        "/api/admin/movies/",
        {"title": "X", "description": "", "duration_minutes": 90},
        token=customer,
    )
    assert reply.status == 403
    assert reply.body["error"]["code"] == "forbidden"
