"""Roles: customer, box_office, admin. Checked on the server on every staff request, against
the account's current role (at most ROLE_CACHE_SECONDS old), whatever the token says."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from cinema.api.routes import ROUTES, STAFF_ACCESS
from cinema.auth.model import Role
from tests.client import ApiClient
from tests.conftest import JWT_SECRET

ADMIN_PREFIX = "/api/admin/"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def admin_routes(access: str | None = None) -> list[tuple[str, str]]:
    return [
        (r.method, concrete(r.path))
        for r in ROUTES
        if r.path.startswith(ADMIN_PREFIX) and (access is None or r.access == access)
    ]


def user_id_of(token: str) -> int:
    return int(jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["sub"])


def test_every_admin_route_needs_a_staff_role() -> None:
    assert admin_routes()
    assert all(r.access in STAFF_ACCESS for r in ROUTES if r.path.startswith(ADMIN_PREFIX))


async def test_a_customer_gets_403_on_all_of_admin(api: ApiClient, users: Any) -> None:
    customer = await users.one()
    for method, path in admin_routes():
        reply = await api.request(method, path, token=customer)
        assert reply.status == 403, (method, path, reply)
        assert reply.body["error"]["code"] == "forbidden"


async def test_box_office_gets_403_on_admin_only_routes(api: ApiClient, users: Any) -> None:
    clerk = await users.one(role=Role.BOX_OFFICE)
    for method, path in admin_routes("admin") + admin_routes("staff"):
        reply = await api.request(method, path, token=clerk)
        assert reply.status == 403, (method, path, reply)


async def test_box_office_may_use_box_office_routes(api: ApiClient, users: Any) -> None:
    clerk = await users.one(role=Role.BOX_OFFICE)
    admin = await users.one(role=Role.ADMIN)
    routes = admin_routes("box_office")
    for token in (clerk, admin):
        for method, path in routes:
            reply = await api.request(method, path, token=token)
            assert reply.status not in (401, 403), (method, path, reply)


async def test_an_admin_sets_a_role(api: ApiClient, users: Any) -> None:
    customer = await users.one()
    uid = user_id_of(customer)
    reply = await api.post(
        f"/api/admin/users/{uid}/role", {"role": "box_office"}, token=api.staff_token
    )
    assert reply.status == 200, reply
    assert reply.body["id"] == uid and reply.body["role"] == "box_office"
    assert set(reply.body) == {"id", "email", "role"}
    # The customer's old token now opens box-office routes (the role is read, not the claim).
    denied = await api.get("/api/admin/halls/", token=customer)
    assert denied.status == 403  # still not an admin route


@pytest.mark.parametrize(
    "body", [{"role": "owner"}, {"role": ""}, {}, {"role": "admin", "x": 1}, {"role": 1}]
)
async def test_a_bad_role_is_400(api: ApiClient, users: Any, body: dict[str, Any]) -> None:
    uid = user_id_of(await users.one())
    reply = await api.post(f"/api/admin/users/{uid}/role", body, token=api.staff_token)
    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "validation_error"


async def test_role_of_an_unknown_user_is_404(api: ApiClient) -> None:
    reply = await api.post(
        "/api/admin/users/999999999/role", {"role": "admin"}, token=api.staff_token
    )
    assert reply.status == 404
    assert reply.body["error"]["code"] == "user_not_found"


async def test_only_admins_set_roles(api: ApiClient, users: Any) -> None:
    clerk = await users.one(role=Role.BOX_OFFICE)
    uid = user_id_of(clerk)
    reply = await api.post(f"/api/admin/users/{uid}/role", {"role": "admin"}, token=clerk)
    assert reply.status == 403


async def _allowed_until_refused(api: ApiClient, token: str, refused: Any) -> list[float]:
    """Ask until refused (with a deadline for the machine, not for the bound); the start time
    of every request that was still allowed. The bound is judged on when a request *started*:
    on a loaded machine a request may take seconds to answer, and that is not the cache."""
    allowed: list[float] = []
    deadline = time.monotonic() + 60
    while True:
        started = time.monotonic()
        reply = await api.get("/api/admin/halls/", token=token)
        if refused(reply):
            return allowed
        assert reply.status == 200, reply
        allowed.append(started)
        assert time.monotonic() < deadline, "never refused"
        await asyncio.sleep(0.05)


async def test_a_demoted_admin_loses_access_within_the_bound(
    make_api: Any, users: Any, pool: Any
) -> None:
    """The role is changed in the database by another process (here: SQL), so this process's
    cache is not told; the bound (ROLE_CACHE_SECONDS) is all that stands between."""
    bound = 1.0
    api = await make_api(role_cache_seconds=bound)
    admin = await users.one(role=Role.ADMIN)
    assert (await api.get("/api/admin/halls/", token=admin)).status == 200
    await pool.execute("UPDATE users SET role = 'customer' WHERE id = $1", user_id_of(admin))
    demoted_at = time.monotonic()
    allowed = await _allowed_until_refused(api, admin, lambda r: r.status == 403)
    assert all(started - demoted_at <= bound for started in allowed), (demoted_at, allowed)
    assert (await api.get("/api/admin/halls/", token=admin)).status == 403  # and it stays


async def test_a_role_changed_through_the_api_takes_effect_at_once(
    api: ApiClient, users: Any
) -> None:
    admin = await users.one(role=Role.ADMIN)
    assert (await api.get("/api/admin/halls/", token=admin)).status == 200
    uid = user_id_of(admin)
    reply = await api.post(f"/api/admin/users/{uid}/role", {"role": "box_office"}, token=admin)
    assert reply.status == 200
    assert (await api.get("/api/admin/halls/", token=admin)).status == 403


async def test_a_deleted_account_loses_access_within_the_bound(
    make_api: Any, users: Any, pool: Any
) -> None:
    bound = 1.0
    api = await make_api(role_cache_seconds=bound)
    admin = await users.one(role=Role.ADMIN)
    assert (await api.get("/api/admin/halls/", token=admin)).status == 200
    await pool.execute("DELETE FROM users WHERE id = $1", user_id_of(admin))
    deleted_at = time.monotonic()

    def refused(reply: Any) -> bool:
        return bool(reply.status == 401 and reply.body["error"]["code"] == "invalid_token")

    allowed = await _allowed_until_refused(api, admin, refused)
    assert all(started - deleted_at <= bound for started in allowed), (deleted_at, allowed)


async def test_the_old_staff_token_claim_is_not_trusted(api: ApiClient, users: Any) -> None:
    """A customer's account with a token that says staff (a token issued before a demotion)."""
    from cinema.auth.tokens import Principal, TokenIssuer

    uid = user_id_of(await users.one())
    forged_claims = TokenIssuer(JWT_SECRET, 60).issue(Principal(uid, True, Role.ADMIN))
    reply = await api.get("/api/admin/halls/", token=forged_claims)
    assert reply.status == 403


# --- cinema createuser ----------------------------------------------------------------------
def cinema(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cinema", *args],
        env={**os.environ, "JWT_SECRET": JWT_SECRET, **env},
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


async def login(api: ApiClient, email: str, password: str) -> str:
    reply = await api.post("/api/auth/token", {"email": email, "password": password})
    assert reply.status == 200, reply
    return str(reply.body["access_token"])


def new_email() -> str:
    return f"clerk{secrets.token_hex(4)}@example.com"


async def test_createuser_box_office_from_a_password_file(
    database_url: str, api: ApiClient, tmp_path: Path
) -> None:
    email, secret = new_email(), "file-password-1"
    path = tmp_path / "pw"
    path.write_text(secret + "\n")
    done = cinema(
        "createuser", "--email", email, "--role", "box_office", "--password-file", str(path),
        DATABASE_URL=database_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "box_office" in done.stdout
    token = await login(api, email, secret)
    assert (await api.get("/api/admin/halls/", token=token)).status == 403
    assert (await api.get("/api/admin/bookings/", token=token)).status == 200


async def test_createuser_reads_stdin_and_keeps_script_forms(
    database_url: str, api: ApiClient
) -> None:
    email = new_email()
    done = cinema(
        "createuser", "--email", email, "--role", "admin", "--password-stdin",
        stdin="stdin-password-1\n", DATABASE_URL=database_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = await login(api, email, "stdin-password-1")
    assert (await api.get("/api/admin/halls/", token=token)).status == 200

    email = new_email()
    done = cinema(
        "createuser", "--email", email, "--password", "script-password", "--role", "customer",
        DATABASE_URL=database_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = await login(api, email, "script-password")
    assert (await api.get("/api/admin/bookings/", token=token)).status == 403


def test_createuser_without_a_password_and_no_terminal_refuses(database_url: str) -> None:
    done = cinema("createuser", "--email", new_email(), DATABASE_URL=database_url)
    assert done.returncode == 1
    assert "--password-file" in done.stderr
    assert "Traceback" not in done.stderr


def test_createuser_staff_with_another_role_is_refused(database_url: str) -> None:
    done = cinema(
        "createuser", "--email", new_email(), "--staff", "--role", "customer",
        "--password", "whatever-123", DATABASE_URL=database_url,
    )  # fmt: skip
    assert done.returncode == 2
