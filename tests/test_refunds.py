"""Refunds end to end (issue 13, item 3): real PostgreSQL, Redis, localstripe, SMTP sink.
POST /api/admin/bookings/{id}/refund records the refund and frees the seats in one
transaction, then creates the Stripe Refund; Stripe's webhooks settle it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cinema.api.keys import REFUNDS
from cinema.auth.model import Role
from cinema.refunds.model import RefundRequest, RefundSource
from cinema.store.refunds import PgRefundStore
from tests.client import wait_for
from tests.payment_fixtures import free_port
from tests.refund_helpers import (
    paid_booking,
    refund_event,
    refund_invariant,
    refund_object,
    send,
)
from tests.test_checkin import check_in
from tests.test_refund_store import shares_of

FEES = {"per_ticket": "0.35", "percent": "2.5"}


def refund_path(booking_id: int) -> str:
    return f"/api/admin/bookings/{booking_id}/refund"


@pytest.fixture
async def clerk(users: Any) -> str:
    return str(await users.one(role=Role.BOX_OFFICE))


async def test_full_refund_end_to_end(
    pay_api: Any, stripe_fake: Any, smtp: Any, users: Any, pool: Any, clerk: str
) -> None:
    api = pay_api.client
    owner = await users.one()
    booking, made = await paid_booking(api, stripe_fake, owner, 2, fees=FEES)
    intent_id = booking["payment"]["payment_intent_id"]
    reply = await api.post(refund_path(booking["id"]), {"reason": "customer asked"}, token=clerk)
    assert reply.status == 200, reply
    body = reply.body
    assert body["payment"]["status"] == "refund_pending"
    assert (body["status"], body["cancel_reason"]) == ("CANCELLED", "refunded")
    assert body["refunded_minor"] == booking["amount_minor"]
    [refund] = body["refunds"]
    assert refund["status"] == "pending" and refund["source"] == "staff"
    assert refund["provider_refund_id"].startswith("re_")
    assert sum(i["amount_minor"] for i in refund["items"]) == booking["amount_minor"]
    # Stripe has exactly one refund, of what was paid.
    [at_stripe] = await stripe_fake.refunds(intent_id)
    assert (at_stripe.id, at_stripe.amount) == (refund["provider_refund_id"], 2 * 1060)
    # The seats are free at once, for Redis too (their sold markers are gone).
    again = await api.book(await users.one(), made.id, made.seat_ids[:2])
    assert again.status == 201, again
    # Stripe says it went through.
    event = refund_event("refund.updated", refund_object(refund, intent_id, "succeeded"))
    assert (await send(api, event))["outcome"] == "refund_updated"
    detail = (await api.get(f"/api/admin/bookings/{booking['id']}/", token=clerk)).body
    assert detail["payment"]["status"] == "refunded"
    assert detail["refunds"][0]["status"] == "refunded"
    state = await refund_invariant(pool, booking["id"])
    assert state["refund_count"] == 1 and state["payment_status"] == "refunded"


async def test_the_refund_email_names_reference_amount_and_reason(
    pay_api: Any, stripe_fake: Any, smtp: Any, users: Any, clerk: str
) -> None:
    api = pay_api.client
    booking, _ = await paid_booking(api, stripe_fake, await users.one(), 1)
    reply = await api.post(refund_path(booking["id"]), {"reason": "projector broke"}, token=clerk)
    assert reply.status == 200, reply

    async def refund_mail() -> Any:
        for message in smtp.for_reference(booking["reference"]):
            if message["X-Refund-Id"]:
                return message
        return None

    async def arrived() -> bool:
        return await refund_mail() is not None

    await wait_for(arrived, 15)
    mail = await refund_mail()
    text = mail.get_body(("plain",)).get_content()
    assert booking["reference"] in text and "10.00 USD" in text and "projector broke" in text
    assert mail["To"] == reply.body["email"]


async def test_partial_refund_by_seat_end_to_end(
    pay_api: Any, stripe_fake: Any, users: Any, pool: Any, clerk: str
) -> None:
    api = pay_api.client
    owner = await users.one()
    booking, made = await paid_booking(api, stripe_fake, owner, 3, fees=FEES)
    intent_id = booking["payment"]["payment_intent_id"]
    seats = made.seat_ids[:3]
    codes = {t["seat_id"]: t["code"] for t in booking["tickets"]}
    reply = await api.post(
        refund_path(booking["id"]), {"reason": "one can't come", "seat_ids": [seats[1]]},
        token=clerk,
    )  # fmt: skip
    assert reply.status == 200, reply
    body = reply.body
    # 3 x (10.00 + 0.35 fee) + 2.5 % of 30.00 = 31.80; one ticket's share is 10.60.
    assert booking["amount_minor"] == 3180
    assert body["status"] == "CONFIRMED" and body["payment"]["status"] == "refund_pending"
    assert body["refunded_minor"] == 1060
    assert [t["status"] for t in body["tickets"]] == ["CONFIRMED", "CANCELLED", "CONFIRMED"]
    [at_stripe] = await stripe_fake.refunds(intent_id)
    assert at_stripe.amount == 1060
    # The refunded ticket is out; the others still admit.
    refused = await check_in(api, clerk, codes[seats[1]])
    assert refused.status == 409 and refused.body["error"]["reason"] == "booking_refunded"
    assert (await check_in(api, clerk, codes[seats[0]])).status == 200
    mine = (await api.get(f"/api/bookings/{booking['id']}/", token=owner)).body
    assert [t["code"] is None for t in mine["tickets"]] == [False, True, False]
    # The refunded seat is bookable at once; the others are still sold.
    assert (await api.book(await users.one(), made.id, [seats[1]])).status == 201
    assert (await api.book(await users.one(), made.id, [seats[2]])).status == 409
    # charge.refunded (newer API versions list no refunds: its total covers ours).
    charge = {"id": "ch_x", "object": "charge", "payment_intent": intent_id,
              "amount_refunded": 1060, "currency": "usd"}  # fmt: skip
    await send(api, refund_event("charge.refunded", charge))
    state = await refund_invariant(pool, booking["id"])
    assert state["payment_status"] == "refunded"
    # The rest: exactly what is left, never more than was paid.
    rest = await api.post(refund_path(booking["id"]), {"reason": "all of it"}, token=clerk)
    assert rest.status == 200, rest
    assert rest.body["refunded_minor"] == 3180 and rest.body["status"] == "CANCELLED"
    refunds = await stripe_fake.refunds(intent_id)
    assert sorted(r.amount for r in refunds) == [1060, 2120]
    again = await api.post(refund_path(booking["id"]), {"reason": "again"}, token=clerk)
    assert again.status == 409 and again.body["error"]["code"] == "already_refunded"
    state = await refund_invariant(pool, booking["id"])
    assert state["refunded_minor"] == state["amount"] == 3180


async def test_a_double_click_makes_exactly_one_refund(
    pay_api: Any, stripe_fake: Any, users: Any, pool: Any, clerk: str
) -> None:
    api = pay_api.client
    booking, _ = await paid_booking(api, stripe_fake, await users.one(), 2)
    clicks = await asyncio.gather(
        *(
            api.post(refund_path(booking["id"]), {"reason": "double click"}, token=clerk)
            for _ in range(10)
        )
    )
    statuses = sorted(c.status for c in clicks)
    assert statuses == [200] + [409] * 9, clicks
    assert {c.body["error"]["code"] for c in clicks if c.status == 409} == {"already_refunded"}
    assert len(await stripe_fake.refunds(booking["payment"]["payment_intent_id"])) == 1
    state = await refund_invariant(pool, booking["id"])
    assert state["refund_count"] == 1 and state["refunded_minor"] == booking["amount_minor"]


async def test_a_pending_booking_is_409_cancel_it_instead(
    pay_api: Any, users: Any, pool: Any, clerk: str
) -> None:
    api = pay_api.client
    made = await api.new_screening()
    booked = await api.book(await users.one(), made.id, made.seat_ids[:1])
    reply = await api.post(refund_path(booked.body["id"]), {"reason": "x"}, token=clerk)
    assert reply.status == 409 and reply.body["error"]["code"] == "booking_pending"
    count = await pool.fetchval("SELECT count(*) FROM refunds WHERE booking_id = $1",
                                booked.body["id"])  # fmt: skip
    assert count == 0


async def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    pay_api: Any, stripe_fake: Any, users: Any, pool: Any, clerk: str
) -> None:
    api = pay_api.client
    owner = await users.one()
    booking, made = await paid_booking(api, stripe_fake, owner, 2)
    path = refund_path(booking["id"])
    foreign = await api.post(path, {"reason": "x", "seat_ids": [made.seat_ids[5]]}, token=clerk)
    assert foreign.status == 422, foreign
    assert foreign.body["error"]["code"] == "seats_not_in_booking"
    assert foreign.body["error"]["seat_ids"] == [made.seat_ids[5]]
    mixed = [made.seat_ids[0], 999_999_999]
    assert (await api.post(path, {"reason": "x", "seat_ids": mixed}, token=clerk)).status == 422
    for bad in (
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 501},
        {"reason": "x", "seat_ids": []},
        {"reason": "x", "seat_ids": [made.seat_ids[0]] * 2},
        {"reason": "x", "seat_ids": list(range(1, 12))},
        {"reason": "x", "seat_ids": list(range(1, 20_000))},
        {"reason": "x", "seat_ids": ["a"]},
        {"reason": "x", "seat_ids": [0]},
        {"reason": "x", "extra": 1},
        {"reason": "nul\x00"},
    ):
        reply = await api.post(path, bad, token=clerk)
        assert reply.status in (400, 413), (bad, reply)
        assert reply.body["error"]["code"] in ("validation_error", "payload_too_large"), reply
    assert (await api.post(path, {"reason": "x"}, token=owner)).status == 403
    assert (await api.post(refund_path(999_999_999), {"reason": "x"}, token=clerk)).status == 404
    state = await refund_invariant(pool, booking["id"])
    assert state["refund_count"] == 0 and state["status"] == "CONFIRMED"
    assert await stripe_fake.refunds(booking["payment"]["payment_intent_id"]) == []


async def test_out_of_order_and_duplicate_webhooks_are_harmless(
    pay_api: Any, stripe_fake: Any, users: Any, pool: Any, clerk: str
) -> None:
    api = pay_api.client
    booking, _ = await paid_booking(api, stripe_fake, await users.one(), 1)
    intent_id = booking["payment"]["payment_intent_id"]
    reply = await api.post(refund_path(booking["id"]), {"reason": "x"}, token=clerk)
    [refund] = reply.body["refunds"]
    succeeded = refund_event("refund.updated", refund_object(refund, intent_id, "succeeded"))
    older = refund_event("refund.updated", refund_object(refund, intent_id, "pending"))
    charge = {"id": "ch_y", "object": "charge", "payment_intent": intent_id,
              "amount_refunded": 1000, "currency": "usd",
              "refunds": {"data": [refund_object(refund, intent_id, "succeeded")]}}  # fmt: skip
    charged = refund_event("charge.refunded", charge)
    # The success first, ten copies at once, then the older "pending", then charge.refunded.
    outcomes = await asyncio.gather(*(send(api, succeeded) for _ in range(10)))
    assert sorted(o["outcome"] for o in outcomes) == ["duplicate"] * 9 + ["refund_updated"]
    await send(api, older)
    await send(api, charged)
    await send(api, charged)
    state = await refund_invariant(pool, booking["id"])
    assert state["payment_status"] == "refunded" and state["refund_count"] == 1
    events = await pool.fetchval(
        "SELECT count(*) FROM payment_events WHERE booking_id = $1 AND outcome = 'refund_updated'",
        booking["id"],
    )
    assert events == 3  # succeeded, older, charge.refunded: each recorded once
    # A late failure report moves it to failed (Stripe can fail a refund after success).
    failed = refund_event("refund.updated", refund_object(refund, intent_id, "failed"))
    await send(api, failed)
    assert (await refund_invariant(pool, booking["id"]))["payment_status"] == "refund_failed"


async def test_stripe_down_keeps_the_refund_pending_and_the_sweep_sends_it(
    make_pay_api: Any, pay_api: Any, stripe_fake: Any, users: Any, pool: Any, clerk: str
) -> None:
    booking, made = await paid_booking(pay_api.client, stripe_fake, await users.one(), 1)
    intent_id = booking["payment"]["payment_intent_id"]
    down = await make_pay_api(stripe_api_base=f"http://127.0.0.1:{free_port()}")
    reply = await down.client.post(refund_path(booking["id"]), {"reason": "x"}, token=clerk)
    assert reply.status == 200, reply
    assert reply.body["payment"]["status"] == "refund_pending"
    [refund] = reply.body["refunds"]
    assert refund["provider_refund_id"] is None and refund["status"] == "pending"
    # The seats are free already.
    assert (await pay_api.client.book(await users.one(), made.id, made.seat_ids[:1])).status == 201
    assert await stripe_fake.refunds(intent_id) == []
    # A webhook about it may come before we learn Stripe's id: our id is in its metadata.
    # The worker's sweep (the same call, in `cinema worker`) sends it once Stripe is back.
    await pool.execute("UPDATE refunds SET next_attempt_at = now() WHERE id = $1", refund["id"])
    service = pay_api.app[REFUNDS]
    assert await service.retry_due() >= 1
    [at_stripe] = await stripe_fake.refunds(intent_id)
    assert at_stripe.amount == 1000
    assert at_stripe.metadata["cinemacore_refund_id"] == str(refund["id"])
    stored = await pool.fetchrow("SELECT provider_refund_id, attempts FROM refunds WHERE id = $1",
                                 refund["id"])  # fmt: skip
    assert stored["provider_refund_id"] == at_stripe.id and stored["attempts"] == 2
    # A retry that finds Stripe already made it (a crash after the call) makes no second one.
    await pool.execute(
        "UPDATE refunds SET provider_refund_id = NULL, next_attempt_at = now() WHERE id = $1",
        refund["id"],
    )
    await service.retry_due()
    assert len(await stripe_fake.refunds(intent_id)) == 1
    assert (
        await pool.fetchval("SELECT provider_refund_id FROM refunds WHERE id = $1", refund["id"])
        == at_stripe.id
    )


async def test_a_webhook_before_the_provider_id_is_stored_finds_its_refund(
    make_pay_api: Any, pay_api: Any, stripe_fake: Any, users: Any, pool: Any, clerk: str
) -> None:
    """Stripe made the refund but its answer never reached us (or came after the event): the
    event finds the row by our id in its metadata and the retry is no longer needed."""
    booking, _ = await paid_booking(pay_api.client, stripe_fake, await users.one(), 1)
    intent_id = booking["payment"]["payment_intent_id"]
    down = await make_pay_api(stripe_api_base=f"http://127.0.0.1:{free_port()}")
    reply = await down.client.post(refund_path(booking["id"]), {"reason": "x"}, token=clerk)
    [refund] = reply.body["refunds"]
    assert refund["provider_refund_id"] is None
    early = refund_object({**refund, "provider_refund_id": "re_early"}, intent_id, "succeeded")
    await send(pay_api.client, refund_event("refund.updated", early))
    row = await pool.fetchrow("SELECT provider_refund_id, status FROM refunds WHERE id = $1",
                              refund["id"])  # fmt: skip
    assert (row["provider_refund_id"], row["status"]) == ("re_early", "refunded")
    assert (await refund_invariant(pool, booking["id"]))["payment_status"] == "refunded"
    await pool.execute("UPDATE refunds SET next_attempt_at = now() WHERE id = $1", refund["id"])
    await pay_api.app[REFUNDS].retry_due()
    assert await stripe_fake.refunds(intent_id) == []  # nothing sent twice


@pytest.mark.parametrize(
    ("currency", "price", "fees", "share", "stripe_share"),
    [
        # 0 decimals: 3 x 1,000 JPY + 3 % -> 3,090; a ticket's share 1,030 (Stripe: 1030)
        ("jpy", "1000", {"per_ticket": "0", "percent": "3"}, 1030, 1030),
        # 3 decimals: 3 x 3.330 KWD + 0.2 % -> 10.00998, rounded once to the charge unit 0.010:
        # 10.010; shares 3.340 / 3.340 / 3.330, the middle seat's 3.340 (Stripe: 3340)
        ("kwd", "3.330", {"per_ticket": "0", "percent": "0.2"}, 3340, 3340),
    ],
)
async def test_partial_refunds_are_exact_in_zero_and_three_decimal_currencies(
    pay_api: Any, stripe_fake: Any, users: Any, pool: Any, clerk: str,
    currency: str, price: str, fees: dict[str, str], share: int, stripe_share: int,
) -> None:  # fmt: skip
    api = pay_api.client
    booking, made = await paid_booking(
        api, stripe_fake, await users.one(), 3, currency=currency,
        prices={"standard": price}, fees=fees,
    )  # fmt: skip
    intent_id = booking["payment"]["payment_intent_id"]
    seats = made.seat_ids[:3]
    one = await api.post(
        refund_path(booking["id"]), {"reason": "x", "seat_ids": [seats[1]]}, token=clerk
    )
    assert one.status == 200, one
    assert one.body["refunded_minor"] == share
    [first] = await stripe_fake.refunds(intent_id)
    assert first.amount == stripe_share
    rest = await api.post(refund_path(booking["id"]), {"reason": "rest"}, token=clerk)
    assert rest.status == 200, rest
    state = await refund_invariant(pool, booking["id"])
    assert state["refunded_minor"] == state["amount"] == booking["amount_minor"]
    at_stripe = await stripe_fake.refunds(intent_id)
    intent = await stripe_fake.intent(intent_id)
    assert sum(r.amount for r in at_stripe) == intent.amount


async def test_the_worker_sweep_frees_sold_markers_a_dead_process_left(
    pay_api: Any, stripe_fake: Any, users: Any, pool: Any
) -> None:
    """The refund committed but its process died before clearing Redis (simulated: the
    store's transaction alone): Redis still says sold until the worker's sweep runs."""
    api = pay_api.client
    booking, made = await paid_booking(api, stripe_fake, await users.one(), 1)
    request = RefundRequest(booking["id"], "x", RefundSource.STAFF, None)
    recorded = await PgRefundStore(pool).record(request, shares_of(booking), whole=True)
    assert recorded.refused is None
    buyer = await users.one()
    refused = await api.book(buyer, made.id, made.seat_ids[:1])
    assert refused.status == 409, refused  # the sold marker: Redis says no
    assert await pay_api.app[REFUNDS].release_refunded_seats() >= 1
    assert (await api.book(buyer, made.id, made.seat_ids[:1])).status == 201
