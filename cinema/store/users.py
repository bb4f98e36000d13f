"""User accounts in PostgreSQL."""

from __future__ import annotations

import asyncpg

from cinema.auth.errors import EmailTaken
from cinema.auth.model import UserRecord
from cinema.store.pool import Pool


class PgUserStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def add_user(self, email: str, password_hash: str, is_staff: bool) -> UserRecord:
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO users (email, password_hash, is_staff) VALUES ($1, $2, $3)"
                " RETURNING id, email, password_hash, is_staff",
                email,
                password_hash,
                is_staff,
            )
        except asyncpg.UniqueViolationError:
            raise EmailTaken(f"{email} is already registered") from None
        return UserRecord(**dict(row))

    async def user_by_email(self, email: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            "SELECT id, email, password_hash, is_staff FROM users WHERE lower(email) = lower($1)",
            email,
        )
        return None if row is None else UserRecord(**dict(row))

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._pool.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash
        )
