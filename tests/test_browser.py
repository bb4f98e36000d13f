"""The web app in a real browser (Playwright driving Debian's Chromium, loopback only): the
whole purchase to CONFIRMED against localstripe, two buyers racing for one seat, a hold seen
live by another buyer, expiry returning the seat, keyboard-only selection, and check-in at the
door twice. Each test ends with what PostgreSQL says."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest

from tests.browser import Browsing, browsing, needs_browser  # noqa: F401 (fixture)
from tests.payment_fixtures import PayApi

pytestmark = needs_browser()

WAIT_MS = 30_000  # generous: other agents load this machine
LAYOUT = {
    "rows": [
        {"label": "A", "seats": [1, 2, None, 3, 4]},
        {"label": "B", "category": "premium", "seats": [1, 2, None, 3, 4]},
    ]
}
PRICES = {"standard": "10.00", "premium": "15.00"}


def seat(page: Any, seat_id: int) -> Any:
    return page.locator(f'.seat[data-seat-id="{seat_id}"]')


async def live_reservations(pool: Any, screening_id: int) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT seat_id, status::text AS status FROM reservations"
        " WHERE screening_id = $1 AND status <> 'CANCELLED' ORDER BY seat_id",
        screening_id,
    )
    return [(r["seat_id"], r["status"]) for r in rows]


async def open_map(browsing: Browsing, api: PayApi, screening_id: int, token: str | None = None,
                   width: int = 1200) -> Any:
    browsing.base_url = str(api.server.make_url("/")).rstrip("/")
    page = await browsing.page(token, width)
    await page.goto(f"/#/screening/{screening_id}")
    await page.locator(".seatmap").wait_for(timeout=WAIT_MS)
    await page.locator(".mode", has_text="live").wait_for(timeout=WAIT_MS)
    return page


async def test_a_buyer_registers_pays_with_the_test_card_and_sees_the_tickets(
    pay_api, browsing, pool
):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    page = await open_map(browsing, pay_api, screening.id)
    chosen = screening.seat_ids[5]  # row B seat 1, premium
    await seat(page, chosen).click()
    assert await seat(page, chosen).get_attribute("aria-pressed") == "true"
    await page.get_by_text("= 15.00 USD").wait_for(timeout=WAIT_MS)
    await page.get_by_role("button", name="Book").click()
    # Not signed in: the form appears inline, the selection is kept.
    email = f"buyer-{secrets.token_hex(4)}@example.com"
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password (at least 8 characters)").fill("correct horse battery")
    await page.get_by_role("button", name="Create account").click()
    await page.locator(".countdown").wait_for(timeout=WAIT_MS)
    await page.get_by_role("button", name="Use the test card").click()
    await page.get_by_role("button", name="Pay 15.00 USD").click()
    await page.locator(".booking-status", has_text="CONFIRMED").wait_for(timeout=WAIT_MS)
    qr = page.locator(".ticket img")
    await qr.wait_for(timeout=WAIT_MS)
    assert (await qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    code = (await page.locator(".ticket code").inner_text()).strip()
    assert code
    assert await live_reservations(pool, screening.id) == [(chosen, "CONFIRMED")]
