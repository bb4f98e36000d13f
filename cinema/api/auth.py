"""POST /api/auth/register and /api/auth/token."""

from __future__ import annotations

from aiohttp import web

from cinema.api.io import json_response, read_body
from cinema.api.keys import ACCOUNTS
from cinema.api.schemas import RegisterIn, TokenIn


async def register(request: web.Request) -> web.Response:
    body = await read_body(request, RegisterIn)
    user = await request.app[ACCOUNTS].register(body.email, body.password)
    return json_response({"id": user.id, "email": user.email}, status=201)


async def token(request: web.Request) -> web.Response:
    body = await read_body(request, TokenIn)
    accounts = request.app[ACCOUNTS]
    access_token = await accounts.login(body.email, body.password)
    return json_response(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": accounts.tokens.ttl_seconds,
        }
    )
