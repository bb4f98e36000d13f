"""Registration, login, and the JWT checks every protected endpoint relies on."""

import secrets
import time
import unicodedata

import jwt
import pytest

from tests.conftest import JWT_SECRET


async def test_register_then_login(api):
    reply = await api.post(
        "/api/auth/register", {"email": "Ann@Example.com", "password": "s3cret-pass"}
    )
    assert reply.status == 201
    assert reply.body["email"] == "Ann@example.com"  # the domain in lower case, once, here
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
    assert reply.body["error"]["message"] in TOKEN_MESSAGES


TOKEN_MESSAGES = {
    "the token has expired: sign in again",
    "the token is not one of ours: sign in again",
}


@pytest.mark.parametrize(
    "token", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "x" * 500, "eyJ.eyJ.sig"]
)
async def test_garbage_tokens_get_a_short_human_message(api, token):
    reply = await api.get("/api/my-bookings/", token=token)
    assert (reply.status, reply.body["error"]["code"]) == (401, "invalid_token")
    message = reply.body["error"]["message"]
    assert message == "the token is not one of ours: sign in again"  # no PyJWT wording
    assert "padding" not in message and "segments" not in message


def _unique(local: str = "user") -> str:
    return f"{local}{secrets.token_hex(4)}"


@pytest.mark.parametrize(
    "sneaky",
    ["\x01", "\x7f", "\u202e", "\u200b", "\ufeff", "\u2066", "\u00a0", "\u00ad", "\x85"],
    ids=["ctrl-01", "del", "rlo", "zwsp", "bom", "lri", "nbsp", "soft-hyphen", "nel"],
)
async def test_invisible_characters_in_emails_are_refused(api, sneaky):
    name = _unique()
    for email in (
        f"{sneaky}{name}@example.com",
        f"{name}{sneaky}@example.com",
        f"{name}@exam{sneaky}ple.com",
    ):
        body = {"email": email, "password": "s3cret-pass"}
        reply = await api.post("/api/auth/register", body)
        assert (reply.status, reply.body["error"]["code"]) == (400, "validation_error"), email
        assert reply.body["error"]["details"] == [
            {"field": "email", "message": "must not contain control, invisible or space characters"}
        ]
        login = await api.post("/api/auth/token", body)
        assert login.status == 400, login  # the same normalisation refuses it at login
    # nothing was registered under the visible part either
    clean = {"email": f"{name}@example.com", "password": "s3cret-pass"}
    assert (await api.post("/api/auth/register", clean)).status == 201


async def test_emails_are_normalised_once_for_register_and_login(api):
    name = _unique("jose")
    decomposed = unicodedata.normalize("NFD", f"{name}\u00e9@B\u00dcCHER.Example")
    reply = await api.post("/api/auth/register", {"email": decomposed, "password": "s3cret-pass"})
    assert reply.status == 201, reply
    assert reply.body["email"] == f"{name}\u00e9@b\u00fccher.example"  # NFC, domain lowered
    # the composed spelling, in any case, is the same account: not a look-alike second one
    composed = {"email": f"{name}\u00e9@B\u00fccher.EXAMPLE", "password": "s3cret-pass"}
    assert (await api.post("/api/auth/register", composed)).body["error"]["code"] == "email_taken"
    assert (await api.post("/api/auth/token", composed)).status == 200
    nfd_login = {"email": decomposed, "password": "s3cret-pass"}
    assert (await api.post("/api/auth/token", nfd_login)).status == 200


@pytest.mark.parametrize(
    "email",
    [
        "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
        "\u00fc\u00f1\u00ee@m\u00fcnchen.de",
        "o'brien+tag@example.co.uk",
    ],
)
async def test_real_non_ascii_addresses_stay_allowed(api, email):
    local, _, domain = email.partition("@")
    email = f"{local}{secrets.token_hex(3)}@{domain}"
    reply = await api.post("/api/auth/register", {"email": email, "password": "s3cret-pass"})
    assert (reply.status, reply.body["email"]) == (201, email)
    assert (
        await api.post("/api/auth/token", {"email": email, "password": "s3cret-pass"})
    ).status == 200


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
