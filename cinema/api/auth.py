"""POST /api/auth/register/ and /api/auth/token/ (also without the trailing slash)."""

from __future__ import annotations

from aiohttp import web

from cinema.api.io import Inputs, json_response
from cinema.api.keys import ACCOUNTS
from cinema.api.schemas import RegisterIn, TokenIn


async def register(request: web.Request, given: Inputs[RegisterIn, None]) -> web.Response:
    user = await request.app[ACCOUNTS].register(given.body.email, given.body.password)
    return json_response({"id": user.id, "email": user.email}, status=201)


async def token(request: web.Request, given: Inputs[TokenIn, None]) -> web.Response:
    accounts = request.app[ACCOUNTS]
    access_token = await accounts.login(given.body.email, given.body.password)
    return json_response(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": accounts.tokens.ttl_seconds,
        }
    )
