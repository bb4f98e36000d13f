"""The web app (issue 14): its static pages at / and /staff/, the files under /app/, and the
two public endpoints it needs beyond the booking API: GET /api/config/ and, in test mode only,
POST /api/bookings/{id}/test-payment/ (pay with a typed test card through localstripe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from cinema.api.errors import ApiError
from cinema.api.io import Inputs, json_response, path_id
from cinema.api.keys import CLIENT_CONFIG, SANDBOX
from cinema.api.schemas import MAX_TICKETS_PER_BOOKING, TestPaymentIn
from cinema.booking.sandbox import SandboxCard
from cinema.settings import Settings

APP_DIR = Path(__file__).resolve().parent / "static" / "app"
# The pages and their modules change with a deploy: revalidate, never serve a stale mix.
NO_STALE = {"Cache-Control": "no-cache"}


def client_config(settings: Settings) -> dict[str, object]:
    return {
        "venue_time_zone": settings.venue_time_zone,
        "payments": settings.payments_enabled,
        "stripe_publishable_key": settings.stripe_publishable_key or None,
        "test_card_payments": settings.test_card_payments,
        "hold_ttl_seconds": settings.hold_ttl_seconds,
        "max_tickets_per_booking": MAX_TICKETS_PER_BOOKING,
    }


async def get_config(request: web.Request, given: Inputs[None, None]) -> web.Response:
    return json_response(request.app[CLIENT_CONFIG])


async def test_payment(request: web.Request, given: Inputs[TestPaymentIn, None]) -> web.Response:
    """Charge my PENDING booking with a test card; the webhook confirms it (poll the booking)."""
    sandbox = request.app.get(SANDBOX)
    if sandbox is None:
        raise ApiError(
            404, "test_payments_off", "test-card payments exist only against a local Stripe server"
        )
    body = given.body
    card = SandboxCard(body.number, body.exp_month, body.exp_year, body.cvc)
    await sandbox.pay(given.user_id, path_id(request), card)
    return json_response({"status": "charged"}, status=202)


def _page(name: str) -> Any:
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(APP_DIR / name, headers=NO_STALE)

    page.__name__ = f"page_{name.replace('.', '_')}"
    return page


def add_webapp_routes(app: web.Application, settings: Settings) -> None:
    app[CLIENT_CONFIG] = client_config(settings)
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/staff", _page("staff.html"))
    app.router.add_get("/staff/", _page("staff.html"))
    app.router.add_static("/app", APP_DIR)
