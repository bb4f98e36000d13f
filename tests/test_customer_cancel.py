"""A customer cancels their own paid booking (issue 13, item 3): refunded in full up to
CUSTOMER_CANCEL_HOURS before the start, later 409 cancel_window_closed. Real PostgreSQL,
Redis and localstripe."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.refund_helpers import paid_booking, refund_invariant


async def test_an_early_cancel_refunds_in_full(
    pay_api: Any, stripe_fake: Any, users: Any, pool: Any
) -> None:
    api = pay_api.client
    owner = await users.one()
    booking, made = await paid_booking(api, stripe_fake, owner, 2, starts_in=timedelta(days=3))
    reply = await api.delete(f"/api/bookings/{booking['id']}/", token=owner)
    assert reply.status == 200, reply
    assert (reply.body["status"], reply.body["cancel_reason"]) == ("CANCELLED", "refunded")
    assert reply.body["payment"]["status"] == "refund_pending"
    [refund] = await stripe_fake.refunds(booking["payment"]["payment_intent_id"])
    assert refund.amount == booking["amount_minor"]
    state = await refund_invariant(pool, booking["id"])
    assert state["refunded_minor"] == booking["amount_minor"]
    source = await pool.fetchval("SELECT source FROM refunds WHERE booking_id = $1", booking["id"])
    assert source == "customer"
    assert (await api.book(await users.one(), made.id, made.seat_ids[:2])).status == 201
    # Cancelling again is harmless and refunds nothing more.
    again = await api.delete(f"/api/bookings/{booking['id']}/", token=owner)
    assert again.status == 200 and again.body["status"] == "CANCELLED"
    assert len(await stripe_fake.refunds(booking["payment"]["payment_intent_id"])) == 1


async def test_inside_the_window_it_is_409_with_the_reason(
    pay_api: Any, stripe_fake: Any, users: Any, pool: Any
) -> None:
    api = pay_api.client
    owner = await users.one()
    booking, _ = await paid_booking(api, stripe_fake, owner, 1, starts_in=timedelta(hours=23))
    reply = await api.delete(f"/api/bookings/{booking['id']}/", token=owner)
    assert reply.status == 409, reply
    error = reply.body["error"]
    assert (error["code"], error["reason"], error["cancel_hours"]) == (
        "cancel_window_closed",
        "cancel_window_closed",
        24,
    )
    state = await refund_invariant(pool, booking["id"])
    assert state["refund_count"] == 0 and state["status"] == "CONFIRMED"
    assert await stripe_fake.refunds(booking["payment"]["payment_intent_id"]) == []


async def test_the_window_is_a_setting_and_others_bookings_stay_404(
    make_pay_api: Any, stripe_fake: Any, users: Any
) -> None:
    short = await make_pay_api(customer_cancel_hours=1)
    await stripe_fake.send_webhooks_to(short.webhook_url)
    api = short.client
    owner = await users.one()
    booking, _ = await paid_booking(api, stripe_fake, owner, 1, starts_in=timedelta(hours=23))
    stranger = await api.delete(f"/api/bookings/{booking['id']}/", token=await users.one())
    assert stranger.status == 404
    reply = await api.delete(f"/api/bookings/{booking['id']}/", token=owner)
    assert reply.status == 200, reply
    assert reply.body["payment"]["status"] == "refund_pending"
