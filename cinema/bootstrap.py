"""The composition root: the one module that imports the adapters (PostgreSQL store, Redis holds
and limits, Taskiq, Stripe) and builds the services for a role.

`api_services` (for cinema/app.py, run as aiohttp's cleanup_ctx) and `worker_loop` (for
`cinema worker`) are async context managers: each opens its resources in order on an exit
stack and closes them in reverse, also when start-up fails half-way. Both roles get their
booking service, mailer, canceller and follow-ups from one `_open_core`, so a new collaborator
of the service or a new sweep is wired in one line, for both processes at once.

No HTTP here (cinema/app.py builds the web app around these services): a restarted worker
starts without importing aiohttp's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cinema import stages
from cinema.auth.passwords import PasswordHashing
from cinema.auth.service import AccountService
from cinema.auth.tokens import TokenIssuer
from cinema.background import Background, BackgroundFollowUps, cancel_until_done
from cinema.booking.live import AllEvents, LiveSeatEvents
from cinema.booking.ports import BookingEvents, ExpiryScheduler, FollowUps, NoExpiryScheduler
from cinema.booking.sandbox import SandboxPayments
from cinema.booking.service import BookingService
from cinema.booking.settlement import PaymentCanceller, PaymentSettlement
from cinema.boxoffice.audit import AuditTrail
from cinema.boxoffice.codes import TicketCodes
from cinema.boxoffice.report import Reports
from cinema.boxoffice.service import BoxOffice
from cinema.catalogue.service import CatalogueService
from cinema.holds import RedisSeatHolds, close_redis, create_redis
from cinema.live.service import LiveLimits, LiveSeats
from cinema.live_leases import RedisStreamLeases
from cinema.live_redis import RedisChangeFeed, RedisSeatChanges
from cinema.metrics import BookingTelemetry, observe_pool
from cinema.payments.stripe_gateway import StripeGateway, gateway_from_settings
from cinema.pricing.service import PromoService
from cinema.ratelimit import RedisRateLimiter
from cinema.refunds.screenings import ScreeningCancellation
from cinema.refunds.service import RefundService
from cinema.settings import Settings
from cinema.store import pool as pg
from cinema.store.audit import PgAuditStore
from cinema.store.bookings import PgBookingStore
from cinema.store.cancellations import PgScreeningStore
from cinema.store.catalogue import PgCatalogueStore
from cinema.store.desk import PgDeskStore
from cinema.store.notices import PgNoticeStore
from cinema.store.promos import PgPromoStore
from cinema.store.refunds import PgRefundStore
from cinema.store.report import PgReportStore
from cinema.store.settlement import PgSettlementStore
from cinema.store.tickets import PgTicketStore
from cinema.store.users import PgUserStore
from cinema.tickets.cancel_mail import CancellationMailer
from cinema.tickets.mailer import SmtpConfig, TicketMailer
from cinema.tickets.refund_mail import RefundMailer
from tasks.follow_ups import FollowUpTasks, TaskiqFollowUps
from tasks.loop import WorkerLoop
from tasks.queue import TaskQueue
from tasks.refunds import ScreeningTasks
from tasks.scheduling import TaskiqExpiryScheduler

log = logging.getLogger(__name__)
T = TypeVar("T")

Probe = Callable[[], Awaitable[None]]

# The drivers' ways of saying "a backing service cannot be reached right now" (JSON 503).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = pg.UNAVAILABLE_ERRORS
POOL_SAMPLE_SECONDS = 2.0
# The worker is on no request path: its task queue may wait longer for Redis than a request.
WORKER_QUEUE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ApiServices:
    """What the API's handlers are given (cinema/app.py puts them under cinema/api/keys.py)."""

    accounts: AccountService
    catalogue: CatalogueService
    bookings: BookingService
    promos: PromoService
    settlement: PaymentSettlement
    boxoffice: BoxOffice
    refunds: RefundService
    cancellations: ScreeningCancellation
    rate_limiter: RedisRateLimiter
    probes: dict[str, Probe]
    live: LiveSeats
    audit: AuditTrail
    reports: Reports
    sandbox: SandboxPayments | None = None  # test-card payments: test mode only


@dataclass(frozen=True)
class _Core:
    """The parts both roles share."""

    pool: pg.Pool
    redis: Any
    holds: RedisSeatHolds
    gateway: StripeGateway | None
    catalogue: CatalogueService
    canceller: PaymentCanceller
    mailer: TicketMailer
    follow_ups: FollowUps
    events: BookingEvents  # metrics and logs, and the live seat status
    changes: RedisSeatChanges
    bookings: BookingService
    promos: PromoService
    refunds: RefundService
    cancellations: ScreeningCancellation
    refund_mailer: RefundMailer


async def _open_queue(
    stack: contextlib.AsyncExitStack, settings: Settings, timeout_seconds: float
) -> TaskQueue:
    queue = TaskQueue(
        settings.taskiq_url, settings.redis_key_prefix, timeout_seconds, settings.redis_cluster
    )
    stack.push_async_callback(_quietly, queue.close)
    return queue


async def _open_expiry(
    stack: contextlib.AsyncExitStack, settings: Settings, queue: TaskQueue
) -> ExpiryScheduler:
    scheduler = TaskiqExpiryScheduler(queue, settings.redis_timeout_seconds * 2)
    stack.push_async_callback(scheduler.close)  # sends what is queued before the queue closes
    return scheduler


async def _open_stores(stack: contextlib.AsyncExitStack, settings: Settings) -> tuple[Any, Any]:
    pool = await pg.create_pool(
        settings.database_url,
        settings.db_pool_min,
        settings.db_pool_max,
        statement_cache_size=settings.db_statement_cache_size,
    )
    stack.push_async_callback(pool.close)
    if settings.stage_timings:
        pool.raw = stages.timed_pool(pool.raw)
    redis = create_redis(
        settings.redis_url, settings.redis_timeout_seconds, cluster=settings.redis_cluster
    )
    # close_redis closes the pool too: without it every app that closed left its POOL_SIZE
    # (64) connections open until garbage collection. A close that times out (a busy or
    # frozen Redis) must not stop the rest of the shutdown.
    stack.push_async_callback(_quietly, functools.partial(close_redis, redis))
    return pool, redis


def _queued_follow_ups(
    settings: Settings, tasks: FollowUpTasks | None, in_process: FollowUps
) -> FollowUps:
    """Ticket emails and intent cancels as Taskiq tasks the worker runs (docs/payments.md);
    the in-process retried jobs only take over when a task cannot be queued."""
    if tasks is None or settings.follow_ups_mode != "taskiq":
        return in_process
    return TaskiqFollowUps(tasks, in_process, settings.redis_timeout_seconds * 2)


async def _open_core(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    queue: TaskQueue | None,
    expiry: ExpiryScheduler,
    follow_ups: FollowUps | None,
    *,
    run_follow_ups: bool = False,
) -> _Core:
    """Open the stores and build the booking service and its collaborators. `follow_ups`
    replaces the chosen follow-ups (tests); `run_follow_ups`: this process runs the tasks."""
    pool, redis = await _open_stores(stack, settings)
    holds = RedisSeatHolds(
        redis, prefix=settings.redis_key_prefix, grace_seconds=settings.hold_grace_seconds
    )
    await holds.load_scripts()
    stack.push_async_callback(holds.close)  # stops its release retries before Redis closes
    gateway = gateway_from_settings(settings)
    if gateway is not None:
        stack.push_async_callback(gateway.close)
    background = Background()
    stack.push_async_callback(background.close)
    store = PgBookingStore(pool)
    canceller = PaymentCanceller(gateway=gateway, store=store)
    mailer = TicketMailer(
        PgTicketStore(pool),
        SmtpConfig(settings.smtp_host, settings.smtp_port, settings.smtp_from),
        codes=TicketCodes(settings.ticket_code_key).code,
    )
    tasks = None if queue is None else FollowUpTasks(queue)
    if tasks is not None and run_follow_ups:
        tasks.serve(send_ticket=mailer.send, cancel_payment=canceller.cancel)
    jobs = follow_ups or _queued_follow_ups(
        settings, tasks, BackgroundFollowUps(background, canceller.cancel, mailer.send)
    )
    catalogue = CatalogueService(PgCatalogueStore(pool))
    changes = _open_changes(stack, redis, settings)
    # Metrics and a log line per booking state change; seat changes to the live viewers.
    live_events = (LiveSeatEvents(changes),) if settings.sse_publish else ()
    events = AllEvents(BookingTelemetry(), *live_events)
    promos = PromoService(PgPromoStore(pool))
    bookings = BookingService(
        holds=_timed(settings, holds, "holds"),
        store=_timed(settings, store, "store"),
        catalogue=_timed(settings, catalogue, "catalogue"),
        expiry=_timed(settings, expiry, "expiry"),
        hold_ttl_seconds=settings.hold_ttl_seconds,
        claim_window_seconds=settings.claim_provisional_seconds,
        filter_enabled=settings.filter_enabled,
        payments=_timed(settings, gateway, "payments"),
        follow_ups=jobs,
        events=_timed(settings, events, "events"),
        promos=promos,
        promo_filter=holds,
    )
    stack.push_async_callback(bookings.close)  # hold extensions in flight, before Redis closes
    refunds, cancellations, refund_mailer = _refunds(
        settings, pool, queue, background, gateway, holds, store, catalogue, bookings,
        run_tasks=run_follow_ups,
    )  # fmt: skip
    return _Core(
        pool,
        redis,
        holds,
        gateway,
        catalogue,
        canceller,
        mailer,
        jobs,
        events,
        changes,
        bookings,
        promos,
        refunds,
        cancellations,
        refund_mailer,
    )


def _refunds(
    settings: Settings,
    pool: pg.Pool,
    queue: TaskQueue | None,
    background: Background,
    gateway: StripeGateway | None,
    holds: RedisSeatHolds,
    store: PgBookingStore,
    catalogue: CatalogueService,
    bookings: BookingService,
    *,
    run_tasks: bool,
) -> tuple[RefundService, ScreeningCancellation, RefundMailer]:
    """Refunds, their email, and screening cancellations (the worker runs those: with no
    task queue this process runs them itself, in the background)."""
    refund_store = PgRefundStore(pool)
    smtp = SmtpConfig(settings.smtp_host, settings.smtp_port, settings.smtp_from)
    mailer = RefundMailer(refund_store, smtp, lease_seconds=smtp.timeout_seconds + 15)
    refunds = RefundService(
        store=refund_store,
        bookings=store,
        catalogue=catalogue,
        holds=holds,
        gateway=gateway,
        spawn=background.spawn,
        notify=mailer.send,
        cancel_pending=bookings.cancel,
        customer_cancel_hours=settings.customer_cancel_hours,
        # Outlasts one Stripe call and its one network retry, so a live caller keeps it.
        lease_seconds=3 * settings.stripe_timeout_seconds + 5,
    )
    tasks = None if queue is None else ScreeningTasks(queue)

    async def in_background(screening_id: int) -> None:
        background.spawn(
            f"cancel-screening-{screening_id}", functools.partial(cancellations.run, screening_id)
        )

    cancellations = ScreeningCancellation(
        store=PgScreeningStore(pool),
        refunds=refunds,
        end_pending=bookings.end_pending,
        kick=in_background if tasks is None else tasks.kick,
        notices=CancellationMailer(
            PgNoticeStore(pool), smtp, lease_seconds=smtp.timeout_seconds + 15
        ),
    )
    if tasks is not None and run_tasks:
        tasks.serve(cancellations.run)
    return refunds, cancellations, mailer


def _timed(settings: Settings, target: T, prefix: str) -> T:
    """With STAGE_TIMINGS=1, `target`'s methods timed as request stages (cinema/stages.py)."""
    if not settings.stage_timings or target is None:
        return target
    return stages.instrument(target, prefix)


def _open_changes(
    stack: contextlib.AsyncExitStack, redis: Any, settings: Settings
) -> RedisSeatChanges:
    """Seat changes published off the request path by one task (both roles publish: the
    worker's expiries release seats)."""
    changes = RedisSeatChanges(redis, settings.redis_key_prefix)
    _run_in_background(stack, changes.run(), "live-publisher")
    stack.push_async_callback(_quietly, changes.flush)  # runs before the task is cancelled
    return changes


async def _open_live(
    stack: contextlib.AsyncExitStack, settings: Settings, core: _Core
) -> LiveSeats:
    """The live seat status of this API process: its own Redis client, whose one pub/sub
    connection carries a subscription per watched screening."""
    client = create_redis(
        settings.redis_url, settings.redis_timeout_seconds * 4, 8, cluster=settings.redis_cluster
    )
    stack.push_async_callback(_quietly, functools.partial(close_redis, client))
    feed = RedisChangeFeed(client, settings.redis_key_prefix)
    stack.push_async_callback(_quietly, feed.close)
    leases = RedisStreamLeases(client, settings.redis_key_prefix)
    live = LiveSeats(
        feed,
        core.bookings.seat_map,
        core.changes,
        LiveLimits(
            max_per_client=settings.sse_max_per_client,
            viewer_queue=settings.sse_viewer_queue,
            reconcile_seconds=settings.sse_reconcile_seconds,
            heartbeat_seconds=settings.sse_heartbeat_seconds,
            batch_seconds=settings.sse_batch_seconds,
        ),
        leases,
    )
    stack.push_async_callback(live.close)
    _run_in_background(stack, live.run(), "live-feed")
    _run_in_background(stack, live.reconcile_forever(), "live-reconcile")
    _run_in_background(stack, live.renew_leases_forever(), "live-leases")
    _run_in_background(stack, live.flush_forever(), "live-flush")
    _run_in_background(stack, live.heartbeat_forever(), "live-heartbeat")
    return live


@contextlib.asynccontextmanager
async def api_services(
    settings: Settings,
    expiry: ExpiryScheduler | None = None,
    follow_ups: FollowUps | None = None,
) -> AsyncIterator[ApiServices]:
    """The API process's services, open while the context is. `expiry` / `follow_ups`
    replace the scheduler and follow-ups the settings choose (tests)."""
    taskiq_expiry = expiry is None and settings.expiry_scheduler == "taskiq"
    taskiq_follow_ups = follow_ups is None and settings.follow_ups_mode == "taskiq"
    async with contextlib.AsyncExitStack() as stack:
        queue = None  # the worker runs the tasks this process queues (docs/expiry.md)
        if taskiq_expiry or taskiq_follow_ups:
            queue = await _open_queue(stack, settings, settings.redis_timeout_seconds)
        if taskiq_expiry:
            assert queue is not None
            expiry = await _open_expiry(stack, settings, queue)
        core = await _open_core(stack, settings, queue, expiry or NoExpiryScheduler(), follow_ups)
        await core.holds.open_connections()  # the first burst of bookings finds them open
        _run_in_background(stack, _sample_pool(core.pool), "pool-sampler")
        # Every API process sweeps the keys of bookings that ended early (docs/concurrency.md).
        _run_in_background(
            stack,
            core.bookings.release_ended_holds_forever(settings.claim_provisional_seconds),
            "ended-holds-sweeper",
        )
        live = await _open_live(stack, settings, core)
        passwords = PasswordHashing(settings.password_hash_threads, settings.password_hash_nice)
        stack.callback(passwords.close)
        yield ApiServices(
            accounts=AccountService(
                PgUserStore(core.pool),
                TokenIssuer(settings.jwt_secret, settings.jwt_ttl_seconds),
                passwords,
                role_cache_seconds=settings.role_cache_seconds,
            ),
            catalogue=core.catalogue,
            bookings=core.bookings,
            promos=core.promos,
            settlement=PaymentSettlement(
                gateway=core.gateway,
                store=PgSettlementStore(core.pool),
                holds=core.holds,
                follow_ups=core.follow_ups,
                events=core.events,
                refunds=core.refunds.apply_event,
            ),
            boxoffice=BoxOffice(PgDeskStore(core.pool), TicketCodes(settings.ticket_code_key)),
            refunds=core.refunds,
            cancellations=core.cancellations,
            rate_limiter=RedisRateLimiter(core.redis, prefix=settings.redis_key_prefix),
            probes={"postgres": pg.pinger(core.pool), "redis": core.redis.ping},
            live=live,
            audit=AuditTrail(PgAuditStore(core.pool)),
            reports=Reports(PgReportStore(core.pool)),
            sandbox=_sandbox(settings, core),
        )


def _sandbox(settings: Settings, core: _Core) -> SandboxPayments | None:
    """Test-card payments through the server's Stripe client, never in live mode."""
    if core.gateway is None or not settings.test_card_payments:
        return None
    return SandboxPayments(core.bookings, core.gateway)


@contextlib.asynccontextmanager
async def worker_loop(settings: Settings) -> AsyncIterator[WorkerLoop]:
    """`cinema worker`'s loop with its services, open while the context is; run it with
    `await loop.run(stop)` inside the context."""
    async with contextlib.AsyncExitStack() as stack:
        queue = await _open_queue(stack, settings, WORKER_QUEUE_TIMEOUT_SECONDS)
        # It schedules nothing (it ends bookings) and runs the follow-up tasks, also those its
        # own expiries kick.
        core = await _open_core(
            stack, settings, queue, NoExpiryScheduler(), None, run_follow_ups=True
        )
        yield WorkerLoop(
            core.bookings,
            queue,
            reconcile_every_seconds=settings.expiry_reconcile_seconds,
            batch_size=settings.expiry_batch_size,
            # Intents of bookings that ended without a hook (a lapsed hold taken over by the
            # next buyer inside create_booking), then tickets no one is sending (a sender
            # crashed mid-send and its lease lapsed, a task lost with Redis).
            sweeps=((core.canceller.sweep,) if core.gateway else ())
            + (core.mailer.sweep,)
            # Cancelled screenings' bookings not ended yet and their emails not sent, refunds
            # the provider has not taken yet (it was down, or their process died), refund
            # emails not sent.
            + (core.cancellations.sweep, core.refunds.retry_due, core.refund_mailer.sweep)
            + (core.refunds.release_refunded_seats,),
        )


def _run_in_background(stack: contextlib.AsyncExitStack, work: Awaitable[None], name: str) -> None:
    """Run `work` for as long as the context is open; cancelled (and awaited) on close."""
    task = asyncio.ensure_future(work)
    task.set_name(name)

    stack.push_async_callback(cancel_until_done, task)


async def _sample_pool(pool: pg.Pool) -> None:
    """Keep the pool-usage gauges current (each process reports its own pool)."""
    while True:
        observe_pool(pool.get_size(), pool.get_idle_size(), pool.get_max_size())
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


async def _quietly(close: Callable[[], Awaitable[None]]) -> None:
    """Closing a Redis client must not stop the rest of the shutdown (Redis may be gone)."""
    try:
        await close()
    except Exception as exc:
        log.warning("closing %s failed (%r); shutting down anyway", close, exc)
