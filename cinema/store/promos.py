"""Promo codes and their use rows in PostgreSQL (taking a use: db/007_promo_codes.sql)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from cinema.pricing.errors import PromoCodeTaken
from cinema.pricing.model import NewPromoCode, PromoCode, PromoKind
from cinema.store import audit
from cinema.store.pool import Pool

_COLUMNS = """
    p.id, p.code, p.kind, p.value, p.max_uses, p.max_uses_per_customer, p.valid_from,
    p.valid_until, p.screening_ids, p.ticket_types, p.active, p.created_at,
    (SELECT count(*) FROM promo_code_uses u
      WHERE u.promo_code_id = p.id AND u.booking_id IS NOT NULL) AS uses
"""

_ADD = """
    WITH code AS (
        INSERT INTO promo_codes (code, kind, value, max_uses, max_uses_per_customer,
                                 valid_from, valid_until, screening_ids, ticket_types)
        VALUES (cinema_audited($1::text, $10::text::jsonb), $2, $3, $4, $5, $6, $7, $8, $9)
        RETURNING id, max_uses
    ), uses AS (
        INSERT INTO promo_code_uses (promo_code_id)
        SELECT code.id FROM code, generate_series(1, code.max_uses)
    )
    SELECT id FROM code
"""


def _promo(row: Any) -> PromoCode:
    screenings, types = row["screening_ids"], row["ticket_types"]
    return PromoCode(
        id=row["id"],
        code=row["code"],
        kind=PromoKind(row["kind"]),
        value=Decimal(row["value"]).normalize(),
        max_uses=row["max_uses"],
        max_uses_per_customer=row["max_uses_per_customer"],
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        screening_ids=None if screenings is None else frozenset(screenings),
        ticket_types=None if types is None else frozenset(types),
        active=row["active"],
        created_at=row["created_at"],
        uses=row["uses"],
    )


class PgPromoStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def add_promo(self, new: NewPromoCode) -> PromoCode:
        try:
            promo_id = await self._pool.fetchval(
                _ADD,
                new.code,
                new.kind.value,
                new.value,
                new.max_uses,
                new.max_uses_per_customer,
                new.valid_from,
                new.valid_until,
                None if new.screening_ids is None else sorted(new.screening_ids),
                None if new.ticket_types is None else sorted(new.ticket_types),
                audit.context(),
            )
        except asyncpg.UniqueViolationError:
            raise PromoCodeTaken(new.code) from None
        found = await self.promo(promo_id)
        assert found is not None
        return found

    async def promo(self, promo_id: int) -> PromoCode | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM promo_codes p WHERE p.id = $1", promo_id
        )
        return None if row is None else _promo(row)

    async def promo_by_code(self, code: str) -> PromoCode | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM promo_codes p WHERE p.code = $1", code
        )
        return None if row is None else _promo(row)

    async def promos(self, limit: int, offset: int) -> list[PromoCode]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM promo_codes p ORDER BY p.id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        return [_promo(r) for r in rows]

    async def deactivate_promo(self, promo_id: int) -> PromoCode | None:
        """Live bookings keep their use; no booking takes a new one after this commits."""
        await self._pool.execute(
            "UPDATE promo_codes SET active = cinema_audited(false, $2::text::jsonb) WHERE id = $1",
            promo_id,
            audit.context(),
        )
        return await self.promo(promo_id)
