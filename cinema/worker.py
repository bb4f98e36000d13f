"""The worker process's composition root (`cinema worker`): builds the booking service with
its collaborators and hands it to the expiry worker. Kept apart from cinema/app.py so the
worker starts without importing the HTTP stack (a restarted worker is back sooner)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cinema.background import Background, BackgroundFollowUps
from cinema.booking.ports import FollowUps, NoExpiryScheduler
from cinema.booking.service import BookingService
from cinema.booking.settlement import PaymentCanceller
from cinema.catalogue.service import CatalogueService
from cinema.holds import RedisSeatHolds, create_redis
from cinema.metrics import BookingTelemetry
from cinema.payments.stripe_gateway import gateway_from_settings
from cinema.settings import Settings
from cinema.store.bookings import PgBookingStore
from cinema.store.catalogue import PgCatalogueStore
from cinema.store.pool import create_pool
from cinema.store.tickets import PgTicketStore
from cinema.tickets.mailer import SmtpConfig, TicketMailer
from tasks.follow_ups import FollowUpTasks, TaskiqFollowUps
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
    gateway = gateway_from_settings(settings)
    background = Background()
    try:
        holds = RedisSeatHolds(
            redis, prefix=settings.redis_key_prefix, grace_seconds=settings.hold_grace_seconds
        )
        await holds.load_scripts()
        store = PgBookingStore(pool)
        # An expired booking's payment intent is cancelled at Stripe in the background.
        canceller = PaymentCanceller(gateway=gateway, store=store)
        mailer = TicketMailer(
            PgTicketStore(pool),
            SmtpConfig(settings.smtp_host, settings.smtp_port, settings.smtp_from),
        )
        # This worker runs the follow-up tasks (ticket emails, intent cancels), also those
        # its own expiries kick; in-process jobs only when a task cannot be queued.
        tasks = FollowUpTasks(queue)
        tasks.serve(send_ticket=mailer.send, cancel_payment=canceller.cancel)
        follow_ups: FollowUps = BackgroundFollowUps(background, canceller.cancel, mailer.send)
        if settings.follow_ups_mode == "taskiq":
            follow_ups = TaskiqFollowUps(tasks, follow_ups, settings.redis_timeout_seconds * 2)

        async def sweep() -> None:
            # Intents of bookings that ended without a hook (a lapsed hold taken over by the
            # next buyer inside create_booking), then tickets no one is sending (a sender
            # crashed mid-send and its lease lapsed, a task lost with Redis).
            if gateway is not None:
                try:
                    await canceller.sweep()
                except Exception as exc:
                    log.warning(
                        "payment intent sweep failed (%r); the ticket sweep still runs", exc
                    )
            await mailer.sweep()

        service = BookingService(
            holds=holds,
            store=store,
            catalogue=CatalogueService(PgCatalogueStore(pool)),
            expiry=NoExpiryScheduler(),
            hold_ttl_seconds=settings.hold_ttl_seconds,
            filter_enabled=settings.filter_enabled,
            payments=gateway,
            follow_ups=follow_ups,
            events=BookingTelemetry(),
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
            also_sweep=sweep,
        )
        await worker.run(stop)
    finally:
        await background.close()
        with contextlib.suppress(Exception):
            await queue.close()
        if gateway is not None:
            await gateway.close()
        await redis.aclose()
        await pool.close()
