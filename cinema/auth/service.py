"""Registration, login and roles."""

from __future__ import annotations

from typing import Protocol

from cinema.auth.errors import AccountNotFound, BadCredentials
from cinema.auth.model import Role, UserRecord
from cinema.auth.passwords import PasswordHashing
from cinema.auth.roles import RoleCache
from cinema.auth.tokens import Principal, TokenIssuer

DEFAULT_ROLE_CACHE_SECONDS = 5.0  # ROLE_CACHE_SECONDS' default


class UserStore(Protocol):
    async def add_user(self, email: str, password_hash: str, role: Role) -> UserRecord: ...

    async def user_by_email(self, email: str) -> UserRecord | None: ...

    async def set_password_hash(self, user_id: int, password_hash: str) -> None: ...

    async def role_of(self, user_id: int) -> Role | None: ...

    async def set_role(self, user_id: int, role: Role) -> UserRecord | None: ...


class AccountService:
    def __init__(
        self,
        users: UserStore,
        tokens: TokenIssuer,
        passwords: PasswordHashing | None = None,
        role_cache_seconds: float = DEFAULT_ROLE_CACHE_SECONDS,
    ) -> None:
        self._users = users
        self.tokens = tokens
        self._passwords = passwords or PasswordHashing(threads=1)
        self._roles = RoleCache(users.role_of, role_cache_seconds)

    async def register(
        self, email: str, password: str, is_staff: bool = False, role: Role | None = None
    ) -> UserRecord:
        """`is_staff` is the old form of `role=Role.ADMIN`."""
        chosen = role or (Role.ADMIN if is_staff else Role.CUSTOMER)
        return await self._users.add_user(email, await self._passwords.hash(password), chosen)

    async def login(self, email: str, password: str) -> str:
        user = await self._users.user_by_email(email)
        verified = await self._passwords.verify(user.password_hash if user else None, password)
        if not verified.ok:
            raise BadCredentials("wrong email or password")
        assert user is not None
        if verified.new_hash is not None:
            await self._users.set_password_hash(user.id, verified.new_hash)
        return self.tokens.issue(Principal(user.id, user.is_staff, user.role))

    async def current_role(self, user_id: int) -> Role | None:
        """The account's role now (at most ROLE_CACHE_SECONDS old); None: no such account."""
        return await self._roles.role_of(user_id)

    async def set_role(self, user_id: int, role: Role) -> UserRecord:
        user = await self._users.set_role(user_id, role)
        if user is None:
            raise AccountNotFound(user_id)
        self._roles.forget(user_id)
        return user
