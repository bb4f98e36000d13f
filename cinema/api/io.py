"""Reading validated requests and writing JSON responses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from cinema.api.errors import ApiError, validation_error
from cinema.api.keys import ACCOUNTS
from cinema.api.limits import Admission
from cinema.api.observe import USER_ID
from cinema.api.schemas import MAX_ID
from cinema.auth.errors import InvalidToken
from cinema.auth.model import Role, role_allows
from cinema.auth.tokens import Principal

M = TypeVar("M", bound=BaseModel)
B = TypeVar("B")
Q = TypeVar("Q")


@dataclass(frozen=True, slots=True)
class Inputs(Generic[B, Q]):
    """What the route table (cinema/api/routes.py) checked before the handler runs: the
    validated body and query (None for a route that declares none) and the caller."""

    body: B
    query: Q
    principal: Principal | None = None
    # A route with `limit_at_claim`: its rate-limit count, for the handler to hand on to the
    # booking service, which sends it with the seat claim (cinema/api/limits.py).
    admission: Admission | None = None

    @property
    def user_id(self) -> int:
        if self.principal is None:
            raise RuntimeError("a public route has no caller; declare access='user'")
        return self.principal.user_id


async def read_body(request: web.Request, model: type[M]) -> M:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await request.read()
    if not raw:
        raise ApiError(400, "malformed_json", "the request body is empty")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def read_query(request: web.Request, model: type[M]) -> M:
    """Parameters the model does not name (?utm_source=, a cache buster) are ignored, as
    clients and proxies add them; the named ones are validated."""
    known = model.model_fields
    try:
        return model.model_validate({k: request.query[k] for k in request.query if k in known})
    except ValidationError as exc:
        raise validation_error(exc) from None


def path_id(request: web.Request, name: str = "id") -> int:
    """Routes only match digits; an id beyond any table's range cannot exist."""
    value = int(request.match_info[name])
    if not 1 <= value <= MAX_ID:
        raise web.HTTPNotFound()
    return value


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "not_authenticated", "send a bearer token in the Authorization header")
    try:
        principal = request.app[ACCOUNTS].tokens.verify(token.strip())
    except InvalidToken as exc:
        raise ApiError(401, "invalid_token", exc.message) from None
    request[USER_ID] = principal.user_id  # for the access log
    return principal


async def authenticate_role(request: web.Request, needed: Role) -> Principal:
    """The caller, if their account's role NOW (not the token's claim, at most
    ROLE_CACHE_SECONDS old) allows `needed`: 401 for a deleted account, 403 for too low a role."""
    principal = authenticate(request)
    role = await request.app[ACCOUNTS].current_role(principal.user_id)
    if role is None:
        raise ApiError(401, "invalid_token", "the account this token was issued for does not exist")
    if not role_allows(role, needed):
        who = "box office and admins" if needed is Role.BOX_OFFICE else "admins"
        raise ApiError(403, "forbidden", f"this endpoint is for {who} only")
    return replace(principal, is_staff=role is Role.ADMIN, role=role)
