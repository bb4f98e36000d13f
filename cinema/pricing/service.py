"""Promo codes: staff create, list, read and deactivate them; the booking path looks them up
by code through a short in-process cache (the booking transaction re-checks what matters)."""

from __future__ import annotations

import time
from collections import OrderedDict

from cinema.pricing.errors import PromoCodeInvalid, PromoCodeNotFound
from cinema.pricing.model import NewPromoCode, PromoCode
from cinema.pricing.ports import PromoStore

LOOKUP_TTL_SECONDS = 5.0  # a deactivation is seen by the lookup within this; PG sees it at once
_CACHE_SIZE = 4096


def normalize_code(code: str) -> str:
    return code.strip().upper()


class PromoService:
    def __init__(self, store: PromoStore, ttl_seconds: float = LOOKUP_TTL_SECONDS) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._cache: OrderedDict[str, tuple[float, PromoCode | None]] = OrderedDict()

    async def create(self, new: NewPromoCode) -> PromoCode:
        return await self._store.add_promo(new)

    async def promo(self, promo_id: int) -> PromoCode:
        found = await self._store.promo(promo_id)
        if found is None:
            raise PromoCodeNotFound(promo_id)
        return found

    async def promos(self, limit: int = 100, offset: int = 0) -> list[PromoCode]:
        return await self._store.promos(limit, offset)

    async def deactivate(self, promo_id: int) -> PromoCode:
        done = await self._store.deactivate_promo(promo_id)
        if done is None:
            raise PromoCodeNotFound(promo_id)
        self._cache.pop(done.code, None)
        return done

    async def lookup(self, code: str) -> PromoCode:
        """The code as a buyer typed it (any case); PromoCodeInvalid if there is none.
        Cached, unknown codes too, so a flood of wrong codes costs one read per period."""
        key = normalize_code(code)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is None or cached[0] <= now:
            found = await self._store.promo_by_code(key)
            self._cache[key] = (now + self._ttl, found)
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            found = cached[1]
        if found is None:
            raise PromoCodeInvalid("unknown", f"there is no promo code {key}")
        return found
