"""Crafted webhooks, signed with stripe-python's own helper: forged, stale, duplicated,
out of order, late. localstripe's own webhooks go nowhere here (`quiet_api`)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from stripe import WebhookSignature

from cinema.booking.model import BookingStatus, CancelReason
from cinema.store.bookings import PgBookingStore
from cinema.store.pool import create_pool
from tests.client import wait_for
from tests.payment_fixtures import (
    CARD_OK,
    WEBHOOK_SECRET,
    booking_of,
    deliver,
    free_port,
    paid_event,
    signed_event,
)
from tests.test_observability import scrape, value

SUCCEEDED = "payment_intent.succeeded"
FAILED = "payment_intent.payment_failed"
CANCELED = "payment_intent.canceled"


async def _book(api, users, seats=1, **screening):
    screening = await api.new_screening(**screening)
    token = await users.one()
    reply = await api.book(token, screening.id, screening.seat_ids[:seats])
    assert reply.status == 201, reply
    return screening, token, reply.body


async def _events(database_url, booking_id):
    conn = await asyncpg.connect(database_url)
    try:
        return [
            (r["type"], r["outcome"])
            for r in await conn.fetch(
                "SELECT type, outcome FROM payment_events WHERE booking_id = $1"
                " ORDER BY received_at",
                booking_id,
            )
        ]
    finally:
        await conn.close()


async def _end_as_expired(database_url, booking_id):
    """What the expiry worker does to a hold past its deadline."""
    pool = await create_pool(database_url, 1, 1)
    try:
        ended = await PgBookingStore(pool).end_booking(
            booking_id, BookingStatus.CANCELLED, CancelReason.EXPIRED.value
        )
        assert ended is not None
    finally:
        await pool.close()


async def test_bad_signatures_are_400_and_change_nothing(quiet_api, users, database_url):
    api = quiet_api.client
    _screening, token, booking = await _book(api, users)
    body, good = paid_event(booking)
    forged_body, forged = paid_event(booking, secret="whsec_not_the_secret")
    stale_body, stale = paid_event(booking, timestamp=int(time.time()) - 301)
    tampered = body.replace(b'"livemode": false', b'"livemode": true')
    cases = [
        (body, None),  # no signature at all
        (body, ""),
        (body, "garbage"),
        (body, "t=notanumber,v1=abc"),
        (forged_body, forged),
        (stale_body, stale),
        (tampered, good),
        (b"\xff\xfe not utf-8", good),
    ]
    for payload, header in cases:
        reply = await deliver(api, payload, header)
        assert reply.status == 400, (header, reply)
        assert reply.body["error"]["code"] == "invalid_webhook"
        assert reply.body["error"]["message"]
    assert (await booking_of(api, token, booking["id"]))["status"] == "PENDING"
    assert await _events(database_url, booking["id"]) == []
    # correctly signed, but not JSON: still a 400, never a 500
    header = WebhookSignature.generate_signature_header("not json", WEBHOOK_SECRET)
    assert (await deliver(api, b"not json", header)).status == 400
    # and the genuine article still works
    assert (await deliver(api, body, good)).body == {"received": True, "outcome": "confirmed"}


async def test_ten_concurrent_duplicates_make_one_transition_and_one_email(
    quiet_api, users, smtp, database_url
):
    api = quiet_api.client
    _screening, token, booking = await _book(api, users, seats=2)
    body, header = paid_event(booking)
    replies = await asyncio.gather(*(deliver(api, body, header) for _ in range(10)))
    assert [r.status for r in replies] == [200] * 10
    outcomes = sorted(r.body["outcome"] for r in replies)
    assert outcomes == ["confirmed"] + ["duplicate"] * 9
    assert await _events(database_url, booking["id"]) == [(SUCCEEDED, "confirmed")]
    confirmed = await booking_of(api, token, booking["id"])
    assert confirmed["status"] == "CONFIRMED"
    await smtp.wait_for(booking["reference"])
    # and once more after the fact
    assert (await deliver(api, body, header)).body["outcome"] == "duplicate"
    # Shutting the server down drains its background jobs: every email there will be is sent.
    await quiet_api.server.close()
    assert len(smtp.for_reference(booking["reference"])) == 1


async def test_out_of_order_events_only_move_forward(quiet_api, users, smtp):
    api = quiet_api.client
    screening, token, booking = await _book(api, users)
    intent = booking["payment"]["payment_intent_id"]
    assert (await deliver(api, *paid_event(booking))).body["outcome"] == "confirmed"
    for late in (FAILED, CANCELED):
        reply = await deliver(api, *signed_event(late, intent))
        assert reply.status == 200
        assert reply.body["outcome"] == "ignored"
    after = await booking_of(api, token, booking["id"])
    assert after["status"] == "CONFIRMED"
    assert after["payment"]["status"] == "succeeded"
    assert (await api.seat_statuses(screening.id))[screening.seat_ids[0]] == "SOLD"


async def test_canceled_intent_cancels_and_frees(quiet_api, users):
    api = quiet_api.client
    screening, token, booking = await _book(api, users)
    intent = booking["payment"]["payment_intent_id"]
    assert (await deliver(api, *signed_event(CANCELED, intent))).body["outcome"] == "cancelled"
    after = await booking_of(api, token, booking["id"])
    assert (after["status"], after["cancel_reason"]) == ("CANCELLED", "payment_canceled")
    assert after["payment"]["status"] == "canceled"
    assert (await api.seat_statuses(screening.id))[screening.seat_ids[0]] == "AVAILABLE"


async def test_success_after_failure_takes_the_free_seats_back(quiet_api, users, smtp):
    api = quiet_api.client
    screening, token, booking = await _book(api, users)
    intent = booking["payment"]["payment_intent_id"]
    assert (await deliver(api, *signed_event(FAILED, intent))).body["outcome"] == "cancelled"
    # e.g. the customer retried with another card before the intent was closed
    reply = await deliver(api, *paid_event(booking))
    assert reply.body["outcome"] == "confirmed_late"
    after = await booking_of(api, token, booking["id"])
    assert (after["status"], after["cancel_reason"]) == ("CONFIRMED", None)
    assert (await api.seat_statuses(screening.id))[screening.seat_ids[0]] == "SOLD"
    await smtp.wait_for(booking["reference"])


async def test_unknown_types_and_intents_are_200_and_ignored(quiet_api, users, database_url):
    api = quiet_api.client
    _screening, token, booking = await _book(api, users)
    intent = booking["payment"]["payment_intent_id"]
    reply = await deliver(api, *signed_event("charge.refunded", intent))
    assert (reply.status, reply.body["outcome"]) == (200, "ignored")
    reply = await deliver(api, *signed_event(SUCCEEDED, "pi_belongs_to_nobody"))
    assert (reply.status, reply.body["outcome"]) == (200, "unknown_intent")
    assert (await booking_of(api, token, booking["id"]))["status"] == "PENDING"


async def test_late_success_after_expiry_confirms_when_the_seat_is_still_free(
    make_pay_api, quiet_api, users, smtp, database_url, redis_prefix
):
    api = (await make_pay_api(hold_ttl_seconds=1)).client
    screening, token, booking = await _book(api, users)
    seat = screening.seat_ids[0]

    async def lapsed() -> bool:
        return (await api.seat_statuses(screening.id))[seat] == "AVAILABLE"

    await wait_for(lapsed)
    await _end_as_expired(database_url, booking["id"])
    assert (await booking_of(api, token, booking["id"]))["cancel_reason"] == "expired"

    reply = await deliver(api, *paid_event(booking))
    assert reply.body["outcome"] == "confirmed_late"
    after = await booking_of(api, token, booking["id"])
    assert after["status"] == "CONFIRMED"
    assert after["payment"]["status"] == "succeeded"
    assert (await api.seat_statuses(screening.id))[seat] == "SOLD"
    assert (await api.book(await users.one(), screening.id, [seat])).status == 409
    await smtp.wait_for(booking["reference"])


async def test_success_for_a_lapsed_but_untouched_hold_confirms(make_pay_api, quiet_api, users):
    api = (await make_pay_api(hold_ttl_seconds=1)).client
    screening, _token, booking = await _book(api, users)
    seat = screening.seat_ids[0]

    async def lapsed() -> bool:
        return (await api.seat_statuses(screening.id))[seat] == "AVAILABLE"

    await wait_for(lapsed)  # still PENDING in the table: nobody ended it yet
    reply = await deliver(api, *paid_event(booking))
    assert reply.body["outcome"] == "confirmed"
    assert (await api.seat_statuses(screening.id))[seat] == "SOLD"


async def test_late_success_after_the_seat_was_retaken_is_refunded(
    make_pay_api, quiet_api, stripe_fake, users, smtp, database_url
):
    api = (await make_pay_api(hold_ttl_seconds=1)).client
    screening, late_token, late = await _book(api, users)
    seat = screening.seat_ids[0]
    intent = late["payment"]["payment_intent_id"]

    async def lapsed() -> bool:
        return (await api.seat_statuses(screening.id))[seat] == "AVAILABLE"

    await wait_for(lapsed)
    winner_token = await users.one()
    # On a 15-minute hold: a 1 s one could lapse too before the late payment lands.
    keeper = (await make_pay_api()).client
    winner = await keeper.book(winner_token, screening.id, [seat])
    assert winner.status == 201
    assert (await booking_of(api, late_token, late["id"]))["cancel_reason"] == "expired"

    # The late customer does pay (Stripe's own webhook is lost here); we hear of it late.
    assert await stripe_fake.pay(intent, CARD_OK) == "succeeded"
    body, header = paid_event(late)
    reply = await deliver(api, body, header)
    assert (reply.status, reply.body["outcome"]) == (200, "refund_needed")
    after = await booking_of(api, late_token, late["id"])
    assert after["status"] == "CANCELLED"
    assert after["payment"]["status"] == "refunded"
    refunds = await stripe_fake.refunds(intent)
    assert [(r.amount, r.status) for r in refunds] == [(1000, "succeeded")]

    # the other buyer keeps the seat
    assert (await booking_of(api, winner_token, winner.body["id"]))["status"] == "PENDING"
    assert (await api.seat_statuses(screening.id))[seat] == "LOCKED"
    # a duplicate refunds nothing twice
    assert (await deliver(api, body, header)).body["outcome"] == "duplicate"
    assert len(await stripe_fake.refunds(intent)) == 1
    assert smtp.for_reference(late["reference"]) == []


async def test_a_refund_stripe_did_not_take_is_retried_by_the_redelivery(
    make_pay_api, quiet_api, stripe_fake, users
):
    api = (await make_pay_api(hold_ttl_seconds=1)).client
    screening, late_token, late = await _book(api, users)
    seat = screening.seat_ids[0]
    intent = late["payment"]["payment_intent_id"]

    async def lapsed() -> bool:
        return (await api.seat_statuses(screening.id))[seat] == "AVAILABLE"

    await wait_for(lapsed)
    # The next buyer holds the seat for the usual 15 minutes: on a 1 s hold of its own, it
    # could lapse too before the late payment lands, which would then (rightly) confirm.
    keeper = (await make_pay_api()).client
    assert (await keeper.book(await users.one(), screening.id, [seat])).status == 201
    assert await stripe_fake.pay(intent, CARD_OK) == "succeeded"

    body, header = paid_event(late)
    down = (await make_pay_api(stripe_api_base=f"http://127.0.0.1:{free_port()}")).client
    failed = await deliver(down, body, header)
    assert failed.status == 502, failed  # Stripe will deliver again
    assert failed.body["error"]["code"] == "payment_provider_unavailable"
    pending = await booking_of(api, late_token, late["id"])
    assert pending["payment"]["status"] == "refund_pending"

    again = await deliver(api, body, header)
    assert (again.status, again.body["outcome"]) == (200, "duplicate")
    assert (await booking_of(api, late_token, late["id"]))["payment"]["status"] == "refunded"
    assert len(await stripe_fake.refunds(intent)) == 1


async def test_webhook_without_payments_configured_is_503(api):
    reply = await deliver(api, *signed_event(SUCCEEDED, "pi_x"))
    assert reply.status == 503
    assert reply.body["error"]["code"] == "payments_not_configured"


async def test_racing_success_and_failure_end_confirmed_with_one_email(quiet_api, users, smtp):
    api = quiet_api.client
    screening, token, booking = await _book(api, users)
    events = [paid_event(booking, kind) for kind in (SUCCEEDED, FAILED, CANCELED) * 4]
    replies = await asyncio.gather(*(deliver(api, *e) for e in events))
    assert {r.status for r in replies} == {200}
    outcomes = [r.body["outcome"] for r in replies]
    # whatever the order, exactly one success took hold: straight away or after a failure
    assert outcomes.count("confirmed") + outcomes.count("confirmed_late") == 1
    after = await booking_of(api, token, booking["id"])
    assert after["status"] == "CONFIRMED"
    assert (await api.seat_statuses(screening.id))[screening.seat_ids[0]] == "SOLD"
    await smtp.wait_for(booking["reference"])
    await quiet_api.server.close()
    assert len(smtp.for_reference(booking["reference"])) == 1


async def test_late_success_racing_a_new_buyer_never_sells_twice(
    make_pay_api, quiet_api, stripe_fake, users, database_url
):
    """Each round: a lapsed, ended, but paid booking's success arrives at the very moment a
    new buyer books the same seat. Exactly one of them ends up with it."""
    api = (await make_pay_api(hold_ttl_seconds=1)).client
    rounds = []
    for _ in range(6):
        screening, _token, booking = await _book(api, users)
        rounds.append((screening, booking))

    async def all_lapsed() -> bool:
        for screening, _ in rounds:
            if (await api.seat_statuses(screening.id))[screening.seat_ids[0]] != "AVAILABLE":
                return False
        return True

    await wait_for(all_lapsed)
    for _, booking in rounds:
        await _end_as_expired(database_url, booking["id"])
        assert await stripe_fake.pay(booking["payment"]["payment_intent_id"], CARD_OK) == (
            "succeeded"
        )
    buyers = await users.create(len(rounds))
    races = []
    for (screening, booking), buyer in zip(rounds, buyers, strict=True):
        event = paid_event(booking)
        races.append(
            asyncio.gather(
                api.book(buyer, screening.id, screening.seat_ids[:1]), deliver(api, *event)
            )
        )
    conn = await asyncpg.connect(database_url)
    try:
        for (screening, _), (bought, webhook) in zip(
            rounds, await asyncio.gather(*races), strict=True
        ):
            assert webhook.status == 200, webhook
            late_won = webhook.body["outcome"] == "confirmed_late"
            assert (bought.status == 201) != late_won, (bought, webhook)
            if not late_won:
                assert webhook.body["outcome"] == "refund_needed"
            live = await conn.fetchval(
                "SELECT count(*) FROM reservations WHERE screening_id = $1"
                " AND status <> 'CANCELLED'",
                screening.id,
            )
            assert live == 1
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("paid", "mismatch"),
    [
        ({"amount": 100}, "amount"),  # a tenth of the price
        ({"currency": "EUR"}, "currency"),  # the right number in another currency
        ({"amount": None, "currency": None}, "missing"),  # the intent id alone
    ],
)
async def test_a_success_for_another_amount_or_currency_is_refunded_not_confirmed(
    quiet_api, stripe_fake, users, smtp, database_url, paid, mismatch
):
    api = quiet_api.client
    screening, token, booking = await _book(api, users)
    intent = booking["payment"]["payment_intent_id"]
    assert (booking["amount_minor"], booking["currency"].upper()) == (1000, "USD")
    assert await stripe_fake.pay(intent, CARD_OK) == "succeeded"  # its webhook goes nowhere
    before = await scrape(api)

    body, header = paid_event(booking, **paid)
    reply = await deliver(api, body, header)
    assert (reply.status, reply.body["outcome"]) == (200, "amount_mismatch")
    after = await booking_of(api, token, booking["id"])
    assert after["status"] == "PENDING"  # left as it was: it expires unless paid right
    assert after["payment"]["status"] == "refunded"
    assert (await api.seat_statuses(screening.id))[screening.seat_ids[0]] == "LOCKED"
    assert await _events(database_url, booking["id"]) == [(SUCCEEDED, "amount_mismatch")]
    assert [r.status for r in await stripe_fake.refunds(intent)] == ["succeeded"]
    counted = value(await scrape(api), "cinema_payment_mismatches_total", mismatch=mismatch)
    assert counted - value(before, "cinema_payment_mismatches_total", mismatch=mismatch) == 1

    # the redelivery changes nothing and refunds nothing twice
    assert (await deliver(api, body, header)).body["outcome"] == "duplicate"
    assert len(await stripe_fake.refunds(intent)) == 1
    assert smtp.for_reference(booking["reference"]) == []


async def test_the_right_amount_in_lower_or_upper_case_currency_confirms(quiet_api, users):
    api = quiet_api.client
    for currency in ("usd", "USD"):
        _screening, _token, booking = await _book(api, users)
        reply = await deliver(api, *paid_event(booking, currency=currency))
        assert reply.body["outcome"] == "confirmed"
