"""The composition root: opens the pools, builds the services, hands them their collaborators."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from cinema.api.errors import error_middleware
from cinema.api.health import HEALTH_ROUTES, PROBES, add_health_routes
from cinema.api.keys import ACCOUNTS, BOOKINGS, CATALOGUE
from cinema.api.limits import LIMITS, Limits, auth_limit_middleware, parse_networks
from cinema.api.observe import metrics_endpoint, observe_middleware
from cinema.api.openapi import add_openapi_routes
from cinema.api.routes import ROUTES, add_routes
from cinema.auth.service import AccountService
from cinema.auth.tokens import TokenIssuer
from cinema.booking.ports import ExpiryScheduler, NoExpiryScheduler
from cinema.booking.service import BookingService
from cinema.catalogue.service import CatalogueService
from cinema.holds import RedisSeatHolds, create_redis
from cinema.metrics import BookingTelemetry, observe_pool
from cinema.ratelimit import RedisRateLimiter
from cinema.settings import Settings
from cinema.store.bookings import PgBookingStore
from cinema.store.catalogue import PgCatalogueStore
from cinema.store.pool import create_pool, pinger
from cinema.store.users import PgUserStore

MAX_BODY_BYTES = 1024 * 1024
POOL_SAMPLE_SECONDS = 2.0


async def _sample_pool(pool: Any) -> None:
    """Keep the pool-usage gauges current (each process reports its own pool)."""
    while True:
        observe_pool(pool.get_size(), pool.get_idle_size(), pool.get_max_size())
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


def init_app(settings: Settings, expiry: ExpiryScheduler | None = None) -> web.Application:
    app = web.Application(
        middlewares=[observe_middleware, error_middleware, auth_limit_middleware],
        client_max_size=MAX_BODY_BYTES,
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
        redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
        holds = RedisSeatHolds(
            redis, prefix=settings.redis_key_prefix, grace_seconds=settings.hold_grace_seconds
        )
        await holds.load_scripts()
        catalogue = CatalogueService(PgCatalogueStore(pool))
        app[CATALOGUE] = catalogue
        app[ACCOUNTS] = AccountService(
            PgUserStore(pool), TokenIssuer(settings.jwt_secret, settings.jwt_ttl_seconds)
        )
        app[BOOKINGS] = BookingService(
            holds=holds,
            store=PgBookingStore(pool),
            catalogue=catalogue,
            expiry=expiry or NoExpiryScheduler(),
            hold_ttl_seconds=settings.hold_ttl_seconds,
            filter_enabled=settings.filter_enabled,
            events=BookingTelemetry(),
        )
        app[LIMITS] = Limits(
            RedisRateLimiter(redis, prefix=settings.redis_key_prefix),
            bookings_per_minute=settings.rate_limit_bookings_per_minute,
            auth_per_minute=settings.rate_limit_auth_per_minute,
            trusted_proxies=parse_networks(settings.trusted_proxies),
        )
        app[PROBES] = {
            "postgres": pinger(pool),
            "redis": redis.ping,
        }
        sampler = asyncio.create_task(_sample_pool(pool))
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await redis.aclose()
            await pool.close()

    app.cleanup_ctx.append(resources)
    add_routes(app)
    add_health_routes(app)
    add_openapi_routes(app, ROUTES + HEALTH_ROUTES)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
