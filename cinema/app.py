"""The aiohttp application: middlewares, the route table, and the services of the API role
(cinema/bootstrap.py, the composition root) opened and closed with the app (cleanup_ctx)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from cinema.api.errors import make_error_middleware
from cinema.api.health import HEALTH_ROUTES, PROBES
from cinema.api.keys import (
    ACCOUNTS,
    AUDIT,
    BOOKINGS,
    BOXOFFICE,
    CANCELLATIONS,
    CATALOGUE,
    LIVE,
    PROMOS,
    REFUNDS,
    REPORTS,
    SANDBOX,
    SETTLEMENT,
)
from cinema.api.limits import LIMITS, Limits, parse_networks
from cinema.api.observe import metrics_endpoint, observe_middleware
from cinema.api.openapi import add_openapi_routes
from cinema.api.routes import ROUTES, add_routes
from cinema.api.webapp import add_webapp_routes
from cinema.booking.ports import ExpiryScheduler, FollowUps
from cinema.bootstrap import UNAVAILABLE_ERRORS, api_services
from cinema.settings import Settings
from cinema.stages import stages_middleware

MAX_BODY_BYTES = 1024 * 1024


def init_app(
    settings: Settings,
    expiry: ExpiryScheduler | None = None,
    follow_ups: FollowUps | None = None,
) -> web.Application:
    """`expiry` / `follow_ups` replace the expiry scheduler and the follow-ups the settings
    choose (default: Taskiq tasks run by `cinema worker`, or retried background jobs in
    this process, per EXPIRY_SCHEDULER and FOLLOW_UPS)."""
    middlewares = [observe_middleware, make_error_middleware(UNAVAILABLE_ERRORS)]
    if settings.stage_timings:
        middlewares.insert(0, stages_middleware)
    app = web.Application(
        middlewares=middlewares,
        client_max_size=MAX_BODY_BYTES,
    )

    async def services(app: web.Application) -> AsyncIterator[None]:
        async with api_services(settings, expiry, follow_ups) as api:
            app[ACCOUNTS] = api.accounts
            app[CATALOGUE] = api.catalogue
            app[BOOKINGS] = api.bookings
            app[PROMOS] = api.promos
            app[SETTLEMENT] = api.settlement
            app[BOXOFFICE] = api.boxoffice
            app[REFUNDS] = api.refunds
            app[CANCELLATIONS] = api.cancellations
            app[LIVE] = api.live
            app[AUDIT] = api.audit
            app[REPORTS] = api.reports
            app[LIMITS] = Limits(
                api.rate_limiter,
                bookings_per_minute=settings.rate_limit_bookings_per_minute,
                auth_per_minute=settings.rate_limit_auth_per_minute,
                trusted_proxies=parse_networks(settings.trusted_proxies),
            )
            app[PROBES] = api.probes
            if api.sandbox is not None:
                app[SANDBOX] = api.sandbox
            yield

    app.cleanup_ctx.append(services)

    async def end_streams(app: web.Application) -> None:
        # Runs before shutdown waits for in-flight requests: a live stream never ends itself.
        if LIVE in app:
            app[LIVE].drop_all()

    app.on_shutdown.append(end_streams)
    routes = ROUTES + HEALTH_ROUTES
    add_routes(app, routes)
    add_openapi_routes(app, routes)
    app.router.add_get("/metrics", metrics_endpoint)
    add_webapp_routes(app, settings)
    return app
