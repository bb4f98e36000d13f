"""User accounts in PostgreSQL."""

from __future__ import annotations

import asyncpg

from cinema.auth.errors import EmailTaken
from cinema.auth.model import Role, UserRecord
from cinema.store import audit
from cinema.store.pool import Pool

_COLUMNS = "id, email, password_hash, role"


def _user(row: asyncpg.Record) -> UserRecord:
    return UserRecord(row["id"], row["email"], row["password_hash"], Role(row["role"]))


class PgUserStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def add_user(self, email: str, password_hash: str, role: Role) -> UserRecord:
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO users (email, password_hash, role)"
                " VALUES (cinema_audited($1::text, $4::text::jsonb), $2, $3)"
                f" RETURNING {_COLUMNS}",
                email,
                password_hash,
                role.value,
                audit.context(),
            )
        except asyncpg.UniqueViolationError:
            raise EmailTaken(f"{email} is already registered") from None
        return _user(row)

    async def user_by_email(self, email: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
        )
        return None if row is None else _user(row)

    async def role_of(self, user_id: int) -> Role | None:
        role = await self._pool.fetchval("SELECT role FROM users WHERE id = $1", user_id)
        return None if role is None else Role(role)

    async def set_role(self, user_id: int, role: Role) -> UserRecord | None:
        row = await self._pool.fetchrow(
            "UPDATE users SET role = cinema_audited($2::text, $3::text::jsonb) WHERE id = $1"
            f" RETURNING {_COLUMNS}",
            user_id,
            role.value,
            audit.context(),
        )
        return None if row is None else _user(row)

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._pool.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash
        )
