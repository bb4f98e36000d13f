"""What pricing needs from the outside: the promo-code store and the Redis filter."""

from __future__ import annotations

from typing import Protocol

from cinema.pricing.model import NewPromoCode, PromoCode


class PromoStore(Protocol):
    async def add_promo(self, new: NewPromoCode) -> PromoCode:
        """Write the code and its max_uses use rows; PromoCodeTaken if the code exists."""
        ...

    async def promo(self, promo_id: int) -> PromoCode | None: ...

    async def promo_by_code(self, code: str) -> PromoCode | None:
        """The code spelled in upper case."""
        ...

    async def promos(self, limit: int, offset: int) -> list[PromoCode]: ...

    async def deactivate_promo(self, promo_id: int) -> PromoCode | None: ...


class PromoFilter(Protocol):
    """A short-lived "no uses left" marker per code, so that once PostgreSQL has said so,
    later buyers are refused without a PostgreSQL transaction. It may only say no, and only
    for seconds: every method is quiet when Redis is not there (False / nothing)."""

    async def promo_exhausted(self, promo_id: int) -> bool: ...

    async def mark_promo_exhausted(self, promo_id: int, ttl_seconds: float) -> None: ...

    async def clear_promo_exhausted(self, promo_id: int) -> None: ...


class NoPromoFilter:
    async def promo_exhausted(self, promo_id: int) -> bool:
        return False

    async def mark_promo_exhausted(self, promo_id: int, ttl_seconds: float) -> None:
        return None

    async def clear_promo_exhausted(self, promo_id: int) -> None:
        return None
