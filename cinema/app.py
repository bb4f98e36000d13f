"""The composition root: opens the pools, builds the services, hands them their collaborators."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from cinema.api.errors import error_middleware
from cinema.api.health import PROBES, add_health_routes
from cinema.api.keys import ACCOUNTS, BOOKINGS, CATALOGUE
from cinema.api.routes import add_routes
from cinema.auth.service import AccountService
from cinema.auth.tokens import TokenIssuer
from cinema.booking.ports import ExpiryScheduler, NoExpiryScheduler
from cinema.booking.service import BookingService
from cinema.catalogue.service import CatalogueService
from cinema.holds import RedisSeatHolds, create_redis
from cinema.settings import Settings
from cinema.store.bookings import PgBookingStore
from cinema.store.catalogue import PgCatalogueStore
from cinema.store.pool import create_pool, pinger
from cinema.store.users import PgUserStore
from tasks.queue import ExpiryQueue
from tasks.scheduling import TaskiqExpiryScheduler

MAX_BODY_BYTES = 1024 * 1024


def init_app(settings: Settings, expiry: ExpiryScheduler | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        queue = None  # the Taskiq side of expiry; the worker runs the tasks (docs/expiry.md)
        scheduler = expiry
        if scheduler is None and settings.expiry_scheduler == "taskiq":
            queue = ExpiryQueue(
                settings.taskiq_url, settings.redis_key_prefix, settings.redis_timeout_seconds
            )
            scheduler = TaskiqExpiryScheduler(queue, settings.redis_timeout_seconds * 2)
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
            expiry=scheduler or NoExpiryScheduler(),
            hold_ttl_seconds=settings.hold_ttl_seconds,
            filter_enabled=settings.filter_enabled,
        )
        app[PROBES] = {
            "postgres": pinger(pool),
            "redis": redis.ping,
        }
        try:
            yield
        finally:
            await redis.aclose()
            await pool.close()
            if queue is not None:
                await queue.close()

    app.cleanup_ctx.append(resources)
    add_routes(app)
    add_health_routes(app)
    return app
