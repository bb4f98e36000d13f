"""Registration and login."""

from __future__ import annotations

from typing import Protocol

from cinema.auth.errors import BadCredentials
from cinema.auth.model import UserRecord
from cinema.auth.passwords import PasswordHashing
from cinema.auth.tokens import Principal, TokenIssuer


class UserStore(Protocol):
    async def add_user(self, email: str, password_hash: str, is_staff: bool) -> UserRecord: ...

    async def user_by_email(self, email: str) -> UserRecord | None: ...

    async def set_password_hash(self, user_id: int, password_hash: str) -> None: ...


class AccountService:
    def __init__(
        self, users: UserStore, tokens: TokenIssuer, passwords: PasswordHashing | None = None
    ) -> None:
        self._users = users
        self.tokens = tokens
        self._passwords = passwords or PasswordHashing(threads=1)

    async def register(self, email: str, password: str, is_staff: bool = False) -> UserRecord:
        return await self._users.add_user(email, await self._passwords.hash(password), is_staff)

    async def login(self, email: str, password: str) -> str:
        user = await self._users.user_by_email(email)
        verified = await self._passwords.verify(user.password_hash if user else None, password)
        if not verified.ok:
            raise BadCredentials("wrong email or password")
        assert user is not None
        if verified.new_hash is not None:
            await self._users.set_password_hash(user.id, verified.new_hash)
        return self.tokens.issue(Principal(user.id, user.is_staff))
