"""The composition root: opens the pools, builds the services, hands them their collaborators."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from cinema.api.errors import make_error_middleware
from cinema.api.health import HEALTH_ROUTES, PROBES, add_health_routes
from cinema.api.keys import ACCOUNTS, BOOKINGS, CATALOGUE, SETTLEMENT
from cinema.api.limits import LIMITS, Limits, auth_limit_middleware, parse_networks
from cinema.api.observe import metrics_endpoint, observe_middleware
from cinema.api.openapi import add_openapi_routes
from cinema.api.routes import ROUTES, add_routes
from cinema.auth.service import AccountService
from cinema.auth.tokens import TokenIssuer
from cinema.background import Background, BackgroundFollowUps
from cinema.booking.ports import ExpiryScheduler, FollowUps, NoExpiryScheduler
from cinema.booking.service import BookingService
from cinema.booking.settlement import PaymentCanceller, PaymentSettlement
from cinema.catalogue.service import CatalogueService
from cinema.holds import RedisSeatHolds, create_redis
from cinema.metrics import BookingTelemetry, observe_pool
from cinema.payments.stripe_gateway import gateway_from_settings
from cinema.ratelimit import RedisRateLimiter
from cinema.settings import Settings
from cinema.store.bookings import PgBookingStore
from cinema.store.catalogue import PgCatalogueStore
from cinema.store.pool import UNAVAILABLE_ERRORS, create_pool, pinger
from cinema.store.settlement import PgSettlementStore
from cinema.store.tickets import PgTicketStore
from cinema.store.users import PgUserStore
from cinema.tickets.mailer import SmtpConfig, TicketMailer
from tasks.follow_ups import FollowUpTasks, TaskiqFollowUps
from tasks.queue import ExpiryQueue
from tasks.scheduling import TaskiqExpiryScheduler

MAX_BODY_BYTES = 1024 * 1024
POOL_SAMPLE_SECONDS = 2.0


async def _sample_pool(pool: Any) -> None:
    """Keep the pool-usage gauges current (each process reports its own pool)."""
    while True:
        observe_pool(pool.get_size(), pool.get_idle_size(), pool.get_max_size())
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


def init_app(
    settings: Settings,
    expiry: ExpiryScheduler | None = None,
    follow_ups: FollowUps | None = None,
) -> web.Application:
    """`follow_ups`: where cancelling intents and sending tickets runs (default: per
    FOLLOW_UPS, Taskiq tasks run by `cinema worker`, or retried background jobs in this
    process)."""
    app = web.Application(
        middlewares=[
            observe_middleware,
            make_error_middleware(UNAVAILABLE_ERRORS),
            auth_limit_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        queue = None  # the Taskiq side of expiry; the worker runs the tasks (docs/expiry.md)
        scheduler = expiry
        follow_ups_on_worker = follow_ups is None and settings.follow_ups_mode == "taskiq"
        if (scheduler is None and settings.expiry_scheduler == "taskiq") or follow_ups_on_worker:
            queue = ExpiryQueue(
                settings.taskiq_url, settings.redis_key_prefix, settings.redis_timeout_seconds
            )
        if scheduler is None and settings.expiry_scheduler == "taskiq":
            assert queue is not None
            scheduler = TaskiqExpiryScheduler(queue, settings.redis_timeout_seconds * 2)
        pool = await create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
        redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
        holds = RedisSeatHolds(
            redis, prefix=settings.redis_key_prefix, grace_seconds=settings.hold_grace_seconds
        )
        await holds.load_scripts()
        await holds.open_connections()
        gateway = gateway_from_settings(settings)
        booking_store = PgBookingStore(pool)
        background = Background()
        mailer = TicketMailer(
            PgTicketStore(pool),
            SmtpConfig(settings.smtp_host, settings.smtp_port, settings.smtp_from),
        )
        canceller = PaymentCanceller(gateway=gateway, store=booking_store)
        jobs = follow_ups or BackgroundFollowUps(background, canceller.cancel, mailer.send)
        if follow_ups_on_worker:
            # The worker sends tickets and cancels intents (docs/payments.md); the in-process
            # jobs only take over when the task cannot be queued.
            assert queue is not None
            jobs = TaskiqFollowUps(FollowUpTasks(queue), jobs, settings.redis_timeout_seconds * 2)
        catalogue = CatalogueService(PgCatalogueStore(pool))
        telemetry = BookingTelemetry()  # metrics and a log line per booking state change
        app[CATALOGUE] = catalogue
        app[ACCOUNTS] = AccountService(
            PgUserStore(pool), TokenIssuer(settings.jwt_secret, settings.jwt_ttl_seconds)
        )
        app[BOOKINGS] = BookingService(
            holds=holds,
            store=booking_store,
            catalogue=catalogue,
            expiry=scheduler or NoExpiryScheduler(),
            hold_ttl_seconds=settings.hold_ttl_seconds,
            claim_window_seconds=settings.claim_provisional_seconds,
            filter_enabled=settings.filter_enabled,
            payments=gateway,
            follow_ups=jobs,
            events=telemetry,
        )
        app[LIMITS] = Limits(
            RedisRateLimiter(redis, prefix=settings.redis_key_prefix),
            bookings_per_minute=settings.rate_limit_bookings_per_minute,
            auth_per_minute=settings.rate_limit_auth_per_minute,
            trusted_proxies=parse_networks(settings.trusted_proxies),
        )
        app[SETTLEMENT] = PaymentSettlement(
            gateway=gateway,
            store=PgSettlementStore(pool),
            holds=holds,
            follow_ups=jobs,
            events=telemetry,
        )
        app[PROBES] = {
            "postgres": pinger(pool),
            "redis": redis.ping,
        }
        sampler = asyncio.create_task(_sample_pool(pool))
        # Every API process sweeps the keys of bookings that ended early (docs/concurrency.md).
        sweeper = asyncio.create_task(
            app[BOOKINGS].release_ended_holds_forever(settings.claim_provisional_seconds)
        )
        try:
            yield
        finally:
            for task in (sampler, sweeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await holds.close()
            await background.close()
            if gateway is not None:
                await gateway.close()
            await redis.aclose()
            await pool.close()
            if isinstance(scheduler, TaskiqExpiryScheduler):
                await scheduler.close()
            if queue is not None:
                await queue.close()

    app.cleanup_ctx.append(resources)
    add_routes(app)
    add_health_routes(app)
    add_openapi_routes(app, ROUTES + HEALTH_ROUTES)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
