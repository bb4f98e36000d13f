"""POST /api/admin/users/{id}/role: an admin gives an account its role."""

from __future__ import annotations

from aiohttp import web

from cinema.api.io import Inputs, json_response, path_id
from cinema.api.keys import ACCOUNTS
from cinema.api.schemas import RoleIn
from cinema.auth.model import Role


async def set_role(request: web.Request, given: Inputs[RoleIn, None]) -> web.Response:
    user = await request.app[ACCOUNTS].set_role(path_id(request), Role(given.body.role))
    return json_response({"id": user.id, "email": user.email, "role": user.role.value})
