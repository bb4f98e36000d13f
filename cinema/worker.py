"""The worker process's composition root (`cinema worker`): builds the booking service with
its collaborators and hands it to the expiry worker. Kept apart from cinema/app.py so the
worker starts without importing the HTTP stack (a restarted worker is back sooner)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cinema.booking.ports import NoExpiryScheduler
from cinema.booking.service import BookingService
from cinema.catalogue.service import CatalogueService
from cinema.holds import RedisSeatHolds, create_redis
from cinema.settings import Settings
from cinema.store.bookings import PgBookingStore
from cinema.store.catalogue import PgCatalogueStore
from cinema.store.pool import create_pool
from tasks.queue import ExpiryQueue
from tasks.worker import ExpiryWorker

log = logging.getLogger(__name__)

# Taskiq logs every send and every execution at INFO: thousands of lines in a burst.
_CHATTY_LOGGERS = (
    "taskiq.cli.scheduler.run",
    "taskiq.receiver.receiver",
    "taskiq.scheduler.scheduler",
)


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """End unpaid bookings at their deadline until `stop` is set."""
    if settings.log_level != "DEBUG":
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    pool = await create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
    redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
    queue = ExpiryQueue(settings.taskiq_url, settings.redis_key_prefix)
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
