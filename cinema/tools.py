"""Operator tasks behind the CLI, wired like the app but without HTTP."""

from __future__ import annotations

from pydantic import ValidationError

from cinema.api.schemas import RegisterIn
from cinema.auth.errors import EmailTaken
from cinema.auth.model import Role
from cinema.auth.service import AccountService
from cinema.auth.tokens import TokenIssuer
from cinema.settings import Settings
from cinema.store.pool import create_pool
from cinema.store.users import PgUserStore


async def create_user(settings: Settings, email: str, password: str, role: Role) -> int:
    try:
        valid = RegisterIn(email=email, password=password)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{first['loc'][0]}: {first['msg']}") from None
    pool = await create_pool(settings.database_url, 1, 2)
    try:
        accounts = AccountService(PgUserStore(pool), TokenIssuer(settings.jwt_secret, 60))
        try:
            user = await accounts.register(valid.email, valid.password, role=role)
        except EmailTaken:
            raise ValueError(f"{email} is already registered") from None
        return user.id
    finally:
        await pool.close()
