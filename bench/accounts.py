"""Accounts for benchmarks that talk to the database directly: users inserted in one go (the
password hashed once: argon2 is slow by design and would only measure itself) and access
tokens signed with the server's JWT secret, so no login request is spent on setup."""

from __future__ import annotations

import secrets

import asyncpg

from cinema.auth.passwords import hash_password_sync
from cinema.auth.tokens import Principal, TokenIssuer


async def seed_users(dsn: str, count: int, jwt_secret: str) -> tuple[str, list[str]]:
    """One staff user and `count` customers: (staff token, customer tokens)."""
    issuer = TokenIssuer(jwt_secret, 3600)
    password = hash_password_sync(secrets.token_urlsafe(12))
    conn = await asyncpg.connect(dsn)
    try:
        ids = [
            await conn.fetchval(
                "INSERT INTO users (email, password_hash, is_staff) VALUES ($1, $2, $3)"
                " RETURNING id",
                f"bench{i}-{secrets.token_hex(4)}@example.com",
                password,
                i == 0,
            )
            for i in range(count + 1)
        ]
    finally:
        await conn.close()
    staff = issuer.issue(Principal(ids[0], True))
    return staff, [issuer.issue(Principal(i, False)) for i in ids[1:]]
