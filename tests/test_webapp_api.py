"""The web app's public additions: GET /api/config/, the public hall layout, the pages at /
and /staff/, and test-card payments (POST /api/bookings/{id}/test-payment/) that run only
against a local Stripe server, never in live mode."""

from __future__ import annotations

import pytest

from cinema.settings import SettingsError, load_settings
from tests.conftest import JWT_SECRET, make_settings
from tests.payment_fixtures import CARD_DECLINED, CARD_OK, wait_status

CARD = {"exp_month": 12, "exp_year": 2034, "cvc": "123"}


async def test_config_says_how_to_pay_and_the_venue_time_zone(make_api):
    api = await make_api(venue_time_zone="Europe/Berlin")
    reply = await api.get("/api/config/")
    assert reply.status == 200, reply
    assert reply.body["venue_time_zone"] == "Europe/Berlin"
    assert reply.body["payments"] is False
    assert reply.body["test_card_payments"] is False
    assert reply.body["stripe_publishable_key"] is None
    assert reply.body["max_tickets_per_booking"] == 10


async def test_pages_and_their_files_are_served(make_api):
    api = await make_api()
    for path in ("/", "/staff/", "/staff", "/app/app.css", "/app/buyer.js"):
        async with api.session.get(api.base_url + path) as resp:
            assert resp.status == 200, path
    async with api.session.get(api.base_url + "/") as resp:
        assert resp.content_type == "text/html"
        assert "https://" not in await resp.text()  # no CDN


async def test_a_hall_layout_is_public_with_its_gaps(make_api):
    api = await make_api()
    layout = {"rows": [{"label": "A", "seats": [1, 2, None, 3]}]}
    screening = await api.new_screening(layout=layout)
    reply = await api.get(f"/api/halls/{screening.hall_id}/")
    assert reply.status == 200, reply
    assert reply.body["layout"]["rows"][0]["seats"][2] is None
    assert (await api.get("/api/halls/999999999/")).status == 404


def test_venue_time_zone_and_publishable_key_are_checked_at_start_up(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    with pytest.raises(SettingsError, match="VENUE_TIME_ZONE"):
        load_settings(_env_file=None, venue_time_zone="Mars/Olympus")
    with pytest.raises(SettingsError, match="STRIPE_PUBLISHABLE_KEY"):
        load_settings(_env_file=None, stripe_publishable_key="sk_test_oops")


@pytest.mark.parametrize(
    ("overrides", "on"),
    [
        ({"stripe_secret_key": "sk_test_x", "stripe_api_base": "http://127.0.0.1:8420"}, True),
        ({"stripe_secret_key": "sk_test_x"}, False),  # Stripe itself
        ({"stripe_secret_key": "sk_live_x", "stripe_api_base": "http://127.0.0.1:8420"}, False),
        ({"stripe_api_base": "http://127.0.0.1:8420"}, False),  # no payments at all
        (
            {
                "stripe_secret_key": "sk_test_x",
                "stripe_api_base": "https://eu.api.stripe.com",
            },
            False,
        ),
    ],
)
def test_test_cards_only_against_a_local_server_with_a_test_key(overrides, on):
    assert make_settings("postgresql://x/y", "p:", **overrides).test_card_payments is on


async def test_test_payment_is_404_in_live_mode(make_api, users):
    api = await make_api()
    token = await users.one()
    body = {"number": CARD_OK, **CARD}
    reply = await api.post("/api/bookings/1/test-payment/", body, token=token)
    assert reply.status == 404, reply
    assert reply.body["error"]["code"] == "test_payments_off"


async def test_a_test_card_pays_and_the_webhook_confirms(pay_api, users):
    api = pay_api.client
    screening = await api.new_screening(layout={"rows": [{"label": "A", "seats": 3}]})
    token, stranger = await users.create(2)
    booking = (await api.book(token, screening.id, screening.seat_ids[:1])).body
    path = f"/api/bookings/{booking['id']}/test-payment/"
    assert (await api.post(path, {"number": CARD_OK, **CARD}, token=stranger)).status == 404
    reply = await api.post(path, {"number": CARD_OK, **CARD}, token=token)
    assert reply.status == 202, reply
    confirmed = await wait_status(api, token, booking["id"], "CONFIRMED")
    assert confirmed["tickets"][0]["qr_svg"].startswith("data:image/svg+xml")
    again = await api.post(path, {"number": CARD_OK, **CARD}, token=token)
    assert again.status == 409, again
    assert again.body["error"]["code"] == "booking_not_payable"


async def test_a_declined_test_card_is_402_and_says_so(pay_api, users):
    api = pay_api.client
    screening = await api.new_screening(layout={"rows": [{"label": "A", "seats": 3}]})
    token = await users.one()
    booking = (await api.book(token, screening.id, screening.seat_ids[:1])).body
    path = f"/api/bookings/{booking['id']}/test-payment/"
    reply = await api.post(path, {"number": CARD_DECLINED, **CARD}, token=token)
    assert reply.status == 402, reply
    assert reply.body["error"]["code"] == "card_declined"
    assert "declined" in reply.body["error"]["message"]
    bad = await api.post(path, {"number": "42", **CARD}, token=token)
    assert bad.status == 400, bad
