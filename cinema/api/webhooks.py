"""POST /api/webhooks/stripe/: the signature is checked over the raw bytes, before any parsing."""

from __future__ import annotations

from aiohttp import web

from cinema.api.io import Inputs, json_response
from cinema.api.keys import SETTLEMENT


async def stripe_webhook(request: web.Request, given: Inputs[None, None]) -> web.Response:
    payload = await request.read()
    signature = request.headers.get("Stripe-Signature")
    outcome = await request.app[SETTLEMENT].handle_webhook(payload, signature)
    return json_response({"received": True, "outcome": outcome.value})
