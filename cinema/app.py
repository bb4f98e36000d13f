"""The composition root: opens the pools, builds the services, hands them their collaborators."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from tasks.worker import ExpiryWorker

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


def init_app(settings: Settings, expiry: ExpiryScheduler | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        expiry_queue = None
        scheduler = expiry
        if scheduler is None and settings.expiry_scheduler == "taskiq":
            expiry_queue = _expiry_queue(settings)
            scheduler = TaskiqExpiryScheduler(expiry_queue, settings.redis_timeout_seconds * 2)
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
            if expiry_queue is not None:
                await expiry_queue.close()

    app.cleanup_ctx.append(resources)
    add_routes(app)
    add_health_routes(app)
    return app


def _expiry_queue(settings: Settings) -> ExpiryQueue:
    return ExpiryQueue(settings.taskiq_url, settings.redis_key_prefix)


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """`cinema worker`: ends unpaid bookings at their deadline until `stop` is set."""
    pool = await create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
    redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
    queue = _expiry_queue(settings)
    try:
        holds = RedisSeatHolds(
            redis, prefix=settings.redis_key_prefix, grace_seconds=settings.hold_grace_seconds
        )
        await holds.load_scripts()
        service = BookingService(
            holds=holds,
            store=PgBookingStore(pool),
            catalogue=CatalogueService(PgCatalogueStore(pool)),
            expiry=NoExpiryScheduler(),
            hold_ttl_seconds=settings.hold_ttl_seconds,
            filter_enabled=settings.filter_enabled,
        )
        if settings.worker_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.worker_metrics_port, addr=settings.host)
            log.info("worker metrics on http://%s:%d/", settings.host, settings.worker_metrics_port)
        worker = ExpiryWorker(
            service,
            queue,
            reconcile_every_seconds=settings.expiry_reconcile_seconds,
            batch_size=settings.expiry_batch_size,
        )
        await worker.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await queue.close()
        await redis.aclose()
        await pool.close()
