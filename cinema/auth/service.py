"""Registration and login."""

from __future__ import annotations

from typing import Protocol

from cinema.auth.errors import BadCredentials
from cinema.auth.model import UserRecord
from cinema.auth.passwords import hash_password, verify_password
from cinema.auth.tokens import Principal, TokenIssuer


class UserStore(Protocol):
    async def add_user(self, email: str, password_hash: str, is_staff: bool) -> UserRecord: ...

    async def user_by_email(self, email: str) -> UserRecord | None: ...


class AccountService:
    def __init__(self, users: UserStore, tokens: TokenIssuer) -> None:
        self._users = users
        self.tokens = tokens

    async def register(self, email: str, password: str, is_staff: bool = False) -> UserRecord:
        return await self._users.add_user(email, await hash_password(password), is_staff)

    async def login(self, email: str, password: str) -> str:
        user = await self._users.user_by_email(email)
        if not await verify_password(user.password_hash if user else None, password):
            raise BadCredentials("wrong email or password")
        assert user is not None
        return self.tokens.issue(Principal(user.id, user.is_staff))
