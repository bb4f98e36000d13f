"""Shared by the refund tests: a booking paid through localstripe, signed refund events
(localstripe makes refunds but sends no refund webhooks: the tests sign Stripe's events
themselves, as Stripe would send them), and the invariant read from PostgreSQL."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import stripe

from tests.client import ApiClient
from tests.payment_fixtures import CARD_OK, WEBHOOK_SECRET, LocalStripe, deliver, wait_status


async def paid_booking(
    api: ApiClient, stripe_fake: LocalStripe, token: str, seats: int = 1, **screening: Any
) -> tuple[dict[str, Any], Any]:
    made = await api.new_screening(**screening)
    booked = await api.book(token, made.id, made.seat_ids[:seats])
    assert booked.status == 201, booked
    intent_id = booked.body["payment"]["payment_intent_id"]
    assert await stripe_fake.pay(intent_id, CARD_OK) == "succeeded"
    confirmed = await wait_status(api, token, booked.body["id"], "CONFIRMED")
    return confirmed, made


def refund_event(
    event_type: str,
    obj: dict[str, Any],
    event_id: str | None = None,
) -> tuple[bytes, str]:
    body = json.dumps(
        {
            "id": event_id or f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    return body.encode(), header


def refund_object(refund: dict[str, Any], intent_id: str, status: str) -> dict[str, Any]:
    """A Stripe Refund as refund.updated carries it."""
    return {
        "id": refund["provider_refund_id"] or f"re_{secrets.token_hex(8)}",
        "object": "refund",
        "status": status,
        "payment_intent": intent_id,
        "amount": refund["amount_minor"],
        "currency": refund["currency"].lower(),
        "metadata": {"cinemacore_refund_id": str(refund["id"])},
    }


async def send(api: ApiClient, event: tuple[bytes, str]) -> Any:
    reply = await deliver(api, *event)
    assert reply.status == 200, reply
    return reply.body


async def refund_invariant(pool: Any, booking_id: int) -> dict[str, Any]:
    """From PostgreSQL: refunds add up, each ticket at most once, never above the amount."""
    row = await pool.fetchrow(
        "SELECT b.amount, b.refunded_minor, b.status, b.payment_status,"
        " (SELECT coalesce(sum(amount_minor), 0) FROM refunds WHERE booking_id = b.id) AS refunds,"
        " (SELECT count(*) FROM refunds WHERE booking_id = b.id) AS refund_count,"
        " (SELECT coalesce(sum(i.amount_minor), 0) FROM refund_items i JOIN refunds r"
        "   ON r.id = i.refund_id WHERE r.booking_id = b.id) AS items,"
        " (SELECT count(*) FROM refund_items i JOIN refunds r ON r.id = i.refund_id"
        "   WHERE r.booking_id = b.id) AS item_count,"
        " (SELECT count(DISTINCT i.reservation_id) FROM refund_items i JOIN refunds r"
        "   ON r.id = i.refund_id WHERE r.booking_id = b.id) AS tickets"
        " FROM bookings b WHERE b.id = $1",
        booking_id,
    )
    assert row["refunded_minor"] == row["refunds"] == row["items"] <= row["amount"]
    assert row["item_count"] == row["tickets"]
    return dict(row)
