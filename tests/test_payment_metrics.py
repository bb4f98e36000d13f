"""Payment webhooks move the booking counters and write booking state log lines."""

import asyncio
import json
import logging

from cinema.logs import JsonFormatter
from tests.payment_fixtures import deliver, paid_event, signed_event
from tests.test_observability import scrape, value


async def _book(api, users):
    screening = await api.new_screening()
    token = await users.one()
    reply = await api.book(token, screening.id, screening.seat_ids[:1])
    assert reply.status == 201, reply
    return reply.body


async def test_confirmations_and_payment_cancellations_are_counted_once(quiet_api, users, caplog):
    api = quiet_api.client
    paid, dropped = await _book(api, users), await _book(api, users)
    before = await scrape(api)
    with caplog.at_level(logging.INFO, logger="cinema.bookings"):
        caplog.clear()
        success = paid_event(paid)
        replies = await asyncio.gather(*(deliver(api, *success) for _ in range(3)))
        assert sorted(r.body["outcome"] for r in replies) == ["confirmed", "duplicate", "duplicate"]
        cancel = signed_event("payment_intent.canceled", dropped["payment"]["payment_intent_id"])
        assert (await deliver(api, *cancel)).body["outcome"] == "cancelled"
    after = await scrape(api)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cinema_bookings_confirmed_total") == 1  # duplicates count nothing
    assert delta("cinema_bookings_cancelled_total", reason="payment_canceled") == 1
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    changes = sorted((ln["booking_id"], ln["status"]) for ln in lines)
    assert changes == sorted([(paid["id"], "CONFIRMED"), (dropped["id"], "CANCELLED")])
