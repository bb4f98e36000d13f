"""End to end against localstripe: book, pay with a card, Stripe's own signed webhook,
the booking confirmed or cancelled, the ticket received over SMTP."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from cinema.booking.settlement import PaymentCanceller
from cinema.holds import seat_key
from cinema.payments.stripe_gateway import StripeGateway
from cinema.store.bookings import PgBookingStore
from cinema.store.pool import create_pool
from cinema.tickets.render import qr_png
from tests.client import wait_for
from tests.conftest import REDIS_URL
from tests.payment_fixtures import (
    CARD_DECLINED,
    CARD_OK,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    booking_of,
    free_port,
    wait_status,
)


async def _redis_values(prefix: str, screening_id: int, seats: list[int]) -> list[bytes | None]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        return list(await client.mget([seat_key(prefix, screening_id, s) for s in seats]))
    finally:
        await client.aclose()


async def test_card_payment_confirms_sells_and_emails_the_ticket(
    pay_api, stripe_fake, smtp, users, redis_prefix
):
    api = pay_api.client
    screening = await api.new_screening(
        layout={"rows": [{"label": "A", "seats": 4}]}, prices={"standard": "12.50"}
    )
    token = await users.one()
    seats = screening.seat_ids[:2]
    reply = await api.book(token, screening.id, seats)
    assert reply.status == 201, reply
    booking = reply.body
    payment = booking["payment"]
    assert payment["provider"] == "stripe"
    assert payment["payment_intent_id"].startswith("pi_")
    assert payment["client_secret"].startswith(payment["payment_intent_id"] + "_secret_")
    assert payment["status"] == "requires_payment"

    intent = await stripe_fake.intent(payment["payment_intent_id"])
    assert intent.amount == 2500
    assert intent.currency == "usd"
    assert intent.metadata["booking_id"] == str(booking["id"])
    assert intent.metadata["reference"] == booking["reference"]

    assert await stripe_fake.pay(payment["payment_intent_id"], CARD_OK) == "succeeded"
    # Only Stripe's signed webhook confirms: the client's word that it paid counts for nothing.
    confirmed = await wait_status(api, token, booking["id"], "CONFIRMED")
    assert confirmed["payment"]["status"] == "succeeded"
    assert confirmed["payment"]["payment_intent_id"] == payment["payment_intent_id"]
    statuses = await api.seat_statuses(screening.id)
    assert [statuses[s] for s in seats] == ["SOLD", "SOLD"]
    assert await _redis_values(redis_prefix, screening.id, seats) == [b"sold|", b"sold|"]

    ticket = await smtp.wait_for(booking["reference"])
    text = ticket.get_body(preferencelist=("plain",)).get_content()
    assert "Test Movie" in text
    assert "Test Hall" in text
    assert booking["reference"] in text
    assert "Row A, seat 1" in text and "Row A, seat 2" in text
    assert "25.00 USD" in text
    images = [p for p in ticket.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 3  # the booking reference, then one per ticket (its door code)
    assert images[0].get_content() == qr_png(booking["reference"])
    mine = await wait_status(api, token, booking["id"], "CONFIRMED")
    codes = [t["code"] for t in mine["tickets"]]
    assert [i.get_content() for i in images[1:]] == [qr_png(c, scale=6) for c in codes]
    assert all(code in text for code in codes)

    # a later claim on a sold seat is turned away
    late = await api.book(await users.one(), screening.id, seats[:1])
    assert late.status == 409


async def test_declined_card_cancels_and_frees_the_seats(pay_api, stripe_fake, smtp, users):
    api = pay_api.client
    screening = await api.new_screening()
    first, second = await users.create(2)
    seats = screening.seat_ids[:2]
    booking = (await api.book(first, screening.id, seats)).body
    intent_id = booking["payment"]["payment_intent_id"]

    assert await stripe_fake.pay(intent_id, CARD_DECLINED) == "card_declined"
    cancelled = await wait_status(api, first, booking["id"], "CANCELLED")
    assert cancelled["cancel_reason"] == "payment_failed"
    statuses = await api.seat_statuses(screening.id)
    assert [statuses[s] for s in seats] == ["AVAILABLE", "AVAILABLE"]

    # the failed intent is closed at Stripe, so it cannot be paid later with another card
    async def intent_canceled() -> bool:
        return (await stripe_fake.intent(intent_id)).status == "canceled"

    await wait_for(intent_canceled)
    assert (await api.book(second, screening.id, seats)).status == 201
    assert smtp.for_reference(booking["reference"]) == []


async def test_idempotent_replay_returns_the_same_payment(pay_api, users):
    api = pay_api.client
    screening = await api.new_screening()
    token = await users.one()
    first = await api.book(token, screening.id, screening.seat_ids[:1], key="pay-once")
    again = await api.book(token, screening.id, screening.seat_ids[:1], key="pay-once")
    assert first.status == again.status == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.body["payment"] == first.body["payment"]
    assert first.body["payment"]["payment_intent_id"].startswith("pi_")


async def test_unreachable_stripe_is_502_and_leaves_nothing_behind(
    make_pay_api, pay_api, users, redis_prefix
):
    down = await make_pay_api(stripe_api_base=f"http://127.0.0.1:{free_port()}")
    screening = await down.client.new_screening()
    token, other = await users.create(2)
    seats = screening.seat_ids[:2]
    reply = await down.client.book(token, screening.id, seats)
    assert reply.status == 502, reply
    assert reply.body["error"]["code"] == "payment_provider_unavailable"

    mine = (await down.client.get("/api/my-bookings/", token=token)).body
    assert [(b["status"], b["cancel_reason"]) for b in mine] == [
        ("CANCELLED", "payment_provider_unavailable")
    ]
    statuses = await down.client.seat_statuses(screening.id)
    assert [statuses[s] for s in seats] == ["AVAILABLE", "AVAILABLE"]
    assert await _redis_values(redis_prefix, screening.id, seats) == [None, None]
    # with Stripe back, anyone can take those seats
    assert (await pay_api.client.book(other, screening.id, seats)).status == 201


async def test_user_cancel_frees_at_once_and_cancels_the_intent(
    pay_api, make_pay_api, stripe_fake, users
):
    api = pay_api.client
    screening = await api.new_screening()
    token = await users.one()
    booking = (await api.book(token, screening.id, screening.seat_ids[:1])).body
    intent_id = booking["payment"]["payment_intent_id"]
    cancelled = await api.delete(f"/api/bookings/{booking['id']}/", token=token)
    assert cancelled.status == 200
    assert cancelled.body["status"] == "CANCELLED"
    assert (await api.seat_statuses(screening.id))[screening.seat_ids[0]] == "AVAILABLE"

    async def cancelled_at_stripe() -> bool:
        return (await stripe_fake.intent(intent_id)).status == "canceled"

    await wait_for(cancelled_at_stripe)

    async def recorded() -> bool:
        return (await booking_of(api, token, booking["id"]))["payment"]["status"] == "canceled"

    await wait_for(recorded)


async def test_cancel_does_not_wait_for_an_unreachable_stripe(pay_api, make_pay_api, users):
    screening = await pay_api.client.new_screening()
    token = await users.one()
    seat = screening.seat_ids[0]
    booking = (await pay_api.client.book(token, screening.id, [seat])).body
    down = await make_pay_api(stripe_api_base=f"http://127.0.0.1:{free_port()}")
    cancelled = await down.client.delete(f"/api/bookings/{booking['id']}/", token=token)
    assert cancelled.status == 200
    assert cancelled.body["status"] == "CANCELLED"
    assert (await down.client.seat_statuses(screening.id))[seat] == "AVAILABLE"


async def test_find_own_booking_by_reference(pay_api, users, database_url):
    api = pay_api.client
    screening = await api.new_screening()
    owner, other = await users.create(2)
    booking = (await api.book(owner, screening.id, screening.seat_ids[:1])).body
    reference = booking["reference"]

    found = await api.get(f"/api/bookings/?reference={reference.lower()}", token=owner)
    assert found.status == 200
    assert found.body == [booking]
    assert found.body[0]["payment"]["status"] == "requires_payment"
    hidden = await api.get(f"/api/bookings/?reference={reference}", token=other)
    assert hidden.body == []
    bad = await api.get("/api/bookings/?reference=nope!", token=owner)
    assert bad.status == 400
    assert bad.body["error"]["code"] == "validation_error"
    assert (await api.get(f"/api/bookings/?reference={reference}")).status == 401
    listed = await api.get("/api/bookings/", token=owner)
    assert [b["id"] for b in listed.body] == [booking["id"]]

    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT payment_intent_id FROM bookings WHERE id = $1", booking["id"]
        )
    finally:
        await conn.close()
    assert stored == booking["payment"]["payment_intent_id"]


async def test_refusing_stripe_is_502_too(make_pay_api, users):
    refused = await make_pay_api(stripe_secret_key="not-a-key")  # localstripe answers 401
    screening = await refused.client.new_screening()
    token = await users.one()
    reply = await refused.client.book(token, screening.id, screening.seat_ids[:1])
    assert reply.status == 502, reply
    assert reply.body["error"]["code"] == "payment_provider_unavailable"
    assert set((await refused.client.seat_statuses(screening.id)).values()) == {"AVAILABLE"}


async def test_no_transaction_is_open_while_stripe_answers(
    make_pay_api, localstripe_url, users, database_url
):
    """A Stripe that takes its time: while it thinks, this database has no open transaction
    (and so no row lock) at all."""
    called = asyncio.Event()
    release = asyncio.Event()

    async def slow_proxy(request: web.Request) -> web.Response:
        called.set()
        await release.wait()
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                localstripe_url + request.path_qs,
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as resp,
        ):
            return web.Response(
                body=await resp.read(), status=resp.status, content_type="application/json"
            )

    proxy_app = web.Application()
    proxy_app.router.add_route("*", "/{tail:.*}", slow_proxy)
    proxy = TestServer(proxy_app, host="127.0.0.1")
    await proxy.start_server()
    try:
        api = (await make_pay_api(stripe_api_base=str(proxy.make_url("")).rstrip("/"))).client
        screening = await api.new_screening()
        token = await users.one()
        booking = asyncio.create_task(api.book(token, screening.id, screening.seat_ids[:2]))
        await asyncio.wait_for(called.wait(), 10)
        conn = await asyncpg.connect(database_url)
        try:
            open_transactions = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
            )
        finally:
            await conn.close()
        assert open_transactions == 0
        release.set()
        reply = await booking
        assert reply.status == 201, reply
        assert reply.body["payment"]["payment_intent_id"].startswith("pi_")
    finally:
        release.set()
        await proxy.close()


async def test_sweep_cancels_intents_of_bookings_ended_without_a_hook(
    make_pay_api, stripe_fake, localstripe_url, users, database_url
):
    """A lapsed hold ended by the next buyer of its seat (inside create_booking) passes through
    no cancel hook; the periodic sweep closes its intent at Stripe."""
    api = (await make_pay_api(hold_ttl_seconds=1)).client
    screening = await api.new_screening()
    seat = screening.seat_ids[0]
    first, second = await users.create(2)
    lapsed = (await api.book(first, screening.id, [seat])).body

    async def available() -> bool:
        return (await api.seat_statuses(screening.id))[seat] == "AVAILABLE"

    await wait_for(available)
    assert (await api.book(second, screening.id, [seat])).status == 201
    assert (await booking_of(api, first, lapsed["id"]))["cancel_reason"] == "expired"

    pool = await create_pool(database_url, 1, 2)
    gateway = StripeGateway(STRIPE_KEY, WEBHOOK_SECRET, localstripe_url)
    try:
        canceller = PaymentCanceller(gateway=gateway, store=PgBookingStore(pool))
        assert await canceller.sweep() >= 1
        intent = await stripe_fake.intent(lapsed["payment"]["payment_intent_id"])
        assert intent.status == "canceled"
        assert (await booking_of(api, first, lapsed["id"]))["payment"]["status"] == "canceled"
        assert lapsed["id"] not in await PgBookingStore(pool).ended_with_open_intent(1000)
    finally:
        await gateway.close()
        await pool.close()
