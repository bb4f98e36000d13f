"""The web app in a real browser (Playwright driving Debian's Chromium, loopback only): the
whole purchase to CONFIRMED against localstripe, two buyers racing for one seat, a hold seen
live by another buyer, expiry returning the seat, keyboard-only selection, and check-in at the
door twice. Each test ends with what PostgreSQL says."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cinema.auth.model import Role
from tests.browser import Browsing, browsing_fixture, needs_browser  # noqa: F401 (fixture)
from tests.payment_fixtures import CARD_OK, PayApi, wait_status

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


async def open_map(
    browsing: Browsing, api: PayApi, screening_id: int, token: str | None = None, width: int = 1200
) -> Any:
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


async def outcome(page: Any) -> str:
    """ "booked" (the checkout's countdown) or "refused" (an error beside the map)."""
    await page.locator(".countdown, .side .error").first.wait_for(timeout=WAIT_MS)
    return "booked" if await page.locator(".countdown").count() else "refused"


async def test_two_buyers_race_for_one_seat_one_wins_the_other_is_told(
    pay_api, browsing, users, pool
):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    tokens = await users.create(2)
    pages = [await open_map(browsing, pay_api, screening.id, t) for t in tokens]
    contested = screening.seat_ids[1]
    for page in pages:
        await seat(page, contested).click()
        assert await seat(page, contested).get_attribute("aria-pressed") == "true"
    buttons = [page.get_by_role("button", name="Book") for page in pages]
    # Both at once, as the DOM's own click: Playwright's click() waits until nothing covers
    # the button, and once (a full CI run) that wait outlasted the other buyer's booking:
    # its hold reached this page live, the selection was dropped and Book disabled, so the
    # second buyer never raced at all.
    await asyncio.gather(*(b.dispatch_event("click") for b in buttons))
    results = [await outcome(page) for page in pages]
    assert sorted(results) == ["booked", "refused"], results
    loser = pages[results.index("refused")]
    await loser.get_by_text("someone else just took").wait_for(timeout=WAIT_MS)
    # Its map shows the seat taken and no longer selected.
    await loser.locator(
        f'.seat[data-seat-id="{contested}"][data-status="LOCKED"][aria-pressed="false"]'
    ).wait_for(timeout=WAIT_MS)
    assert await live_reservations(pool, screening.id) == [(contested, "PENDING")]


async def test_a_hold_appears_in_another_buyers_map_within_a_second(pay_api, browsing, users, pool):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    watcher = await open_map(browsing, pay_api, screening.id)
    target = screening.seat_ids[3]
    assert await seat(watcher, target).get_attribute("data-status") == "AVAILABLE"
    # The page notes when the seat turns LOCKED (same machine, same clock as the server):
    # the delay measured is the hold's own, not this test's polling of the page.
    await watcher.evaluate(SEEN_LOCKED, target)
    reply = await api.book(await users.one(), screening.id, [target])
    assert reply.status == 201, reply
    try:
        await watcher.locator(f'.seat[data-seat-id="{target}"][data-status="LOCKED"]').wait_for(
            timeout=WAIT_MS
        )
    except Exception:
        print("the page says:", await watcher.locator(".mode").inner_text())
        print("its counts:", await watcher.locator(".counts").inner_text())
        print("the API says:", await api.seat_statuses(screening.id))
        raise
    seen_ms = await watcher.evaluate("window.__lockedAt")
    held_ms = datetime.fromisoformat(reply.body["created_at"]).timestamp() * 1000
    assert seen_ms - held_ms < 1000, f"the hold took {seen_ms - held_ms:.0f} ms to appear"
    # The stream delivered it, not the fallback polling.
    assert await watcher.locator(".mode", has_text="live").count() == 1
    assert await live_reservations(pool, screening.id) == [(target, "PENDING")]


SEEN_LOCKED = """(id) => {
  const el = document.querySelector(`.seat[data-seat-id="${id}"]`);
  new MutationObserver(() => {
    if (el.dataset.status === "LOCKED" && !window.__lockedAt) window.__lockedAt = Date.now();
  }).observe(el, { attributes: true, attributeFilter: ["data-status"] });
}"""


async def test_an_expired_hold_says_so_and_the_seat_returns_on_screen(
    make_pay_api, stripe_fake, browsing, users, pool
):
    short = await make_pay_api(
        hold_ttl_seconds=4, hold_grace_seconds=0, expiry_scheduler="off", sse_reconcile_seconds=0.5
    )
    await stripe_fake.send_webhooks_to(short.webhook_url)
    screening = await short.client.new_screening(layout=LAYOUT, prices=PRICES)
    target = screening.seat_ids[0]
    buyer = await open_map(browsing, short, screening.id, await users.one())
    other = await open_map(browsing, short, screening.id)
    await seat(buyer, target).click()
    await buyer.get_by_role("button", name="Book").click()
    await buyer.locator(".countdown").wait_for(timeout=WAIT_MS)
    await other.locator(f'.seat[data-seat-id="{target}"][data-status="LOCKED"]').wait_for(
        timeout=WAIT_MS
    )
    await buyer.get_by_text("your hold expired and the seats went back on sale").wait_for(
        timeout=WAIT_MS
    )
    assert await buyer.locator("#pay").count() == 0  # nothing left to pay
    await other.locator(f'.seat[data-seat-id="{target}"][data-status="AVAILABLE"]').wait_for(
        timeout=WAIT_MS
    )
    holding = await pool.fetchval(
        "SELECT count(*) FROM reservations WHERE screening_id = $1 AND status <> 'CANCELLED'"
        " AND (status = 'CONFIRMED' OR expires_at > now())",
        screening.id,
    )
    assert holding == 0


async def press_until(page: Any, key: str, predicate: str, tries: int = 40) -> None:
    for _ in range(tries):
        if await page.evaluate(predicate):
            return
        await page.keyboard.press(key)
    raise AssertionError(f"{predicate} never held after pressing {key} {tries} times")


async def test_keyboard_only_seat_selection_and_booking(pay_api, browsing, users, pool):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    page = await open_map(browsing, pay_api, screening.id, await users.one())
    on_seat = "document.activeElement.classList.contains('seat')"
    await press_until(page, "Tab", on_seat)
    # The map is one tab stop, entered at the first free seat (A1); arrows cross the aisle.
    for key in ("ArrowRight", "ArrowRight", "ArrowDown"):
        await page.keyboard.press(key)
    focused = await page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused.startswith("Row B seat 3, premium"), focused
    await page.keyboard.press("Space")
    b3 = screening.seat_ids[6]
    assert await seat(page, b3).get_attribute("aria-pressed") == "true"
    await press_until(page, "Tab", "document.activeElement.textContent === 'Book'")
    await page.keyboard.press("Enter")
    await page.locator(".countdown").wait_for(timeout=WAIT_MS)
    assert await live_reservations(pool, screening.id) == [(b3, "PENDING")]


async def confirmed_booking(
    api: PayApi, stripe_fake: Any, token: str, seat_ids: list[int], screening_id: int
) -> dict[str, Any]:
    booking = (await api.client.book(token, screening_id, seat_ids)).body
    assert await stripe_fake.pay(booking["payment"]["payment_intent_id"], CARD_OK) == "succeeded"
    return await wait_status(api.client, token, booking["id"], "CONFIRMED")


async def test_door_check_in_twice_green_then_red(pay_api, stripe_fake, browsing, users, pool):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    buyer = await users.one()
    booking = await confirmed_booking(
        pay_api, stripe_fake, buyer, screening.seat_ids[2:3], screening.id
    )
    code = booking["tickets"][0]["code"]
    browsing.base_url = str(pay_api.server.make_url("/")).rstrip("/")
    door = await browsing.page(await users.one(role=Role.BOX_OFFICE))
    await door.goto(f"/staff/#/checkin/{screening.id}")
    field = door.get_by_label("Ticket code (type it, or scan into this field)")
    await field.fill(code)
    await field.press("Enter")
    green = door.locator(".verdict.good")
    await green.wait_for(timeout=WAIT_MS)
    assert "Welcome in" in await green.inner_text()
    await field.fill(code)
    await field.press("Enter")
    red = door.locator(".verdict.bad")
    await red.wait_for(timeout=WAIT_MS)
    assert "already checked in" in (await red.inner_text()).lower()
    checked = await pool.fetch(
        "SELECT checked_in_at FROM reservations WHERE booking_id = $1", booking["id"]
    )
    assert len(checked) == 1 and checked[0]["checked_in_at"] is not None


async def test_staff_see_today_and_who_holds_each_seat_live(pay_api, browsing, users, pool):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES, starts_in=timedelta(hours=1))
    browsing.base_url = str(pay_api.server.make_url("/")).rstrip("/")
    staff = await browsing.page(await users.one(role=Role.BOX_OFFICE))
    await staff.goto(f"/staff/#/screening/{screening.id}")
    await staff.locator(".seatmap").wait_for(timeout=WAIT_MS)
    target = screening.seat_ids[4]
    booking = (await api.book(await users.one(), screening.id, [target])).body
    held = staff.locator(f'.seat[data-seat-id="{target}"][data-reference="{booking["reference"]}"]')
    await held.wait_for(timeout=WAIT_MS)
    assert booking["reference"] in (await held.get_attribute("title") or "")
    customer = await browsing.page(await users.one())
    await customer.goto("/staff/")
    await customer.get_by_text("for cinema staff only").wait_for(timeout=WAIT_MS)
    assert await live_reservations(pool, screening.id) == [(target, "PENDING")]


async def test_admins_see_the_activity_feed_box_office_is_told_it_is_for_admins(
    pay_api, browsing, users
):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    booking = (await api.book(await users.one(), screening.id, screening.seat_ids[:1])).body
    browsing.base_url = str(pay_api.server.make_url("/")).rstrip("/")
    admin = await browsing.page(await users.one(role=Role.ADMIN))
    await admin.goto("/staff/#/activity")
    created = admin.locator(f'.feed li[data-booking-id="{booking["id"]}"]', has_text="created")
    await created.first.wait_for(timeout=WAIT_MS)
    clerk = await browsing.page(await users.one(role=Role.BOX_OFFICE))
    await clerk.goto("/staff/#/activity")
    await clerk.get_by_text("The activity feed is for admins only.").wait_for(timeout=WAIT_MS)


ERRORS = [
    (429, {"code": "rate_limited", "message": "slow down", "retry_after": 7}, "Try again in 7 s"),
    (503, {"code": "service_unavailable", "message": "x"}, "briefly unavailable"),
    (502, {"code": "payment_provider_unavailable", "message": "x"}, "payment provider did not"),
    (422, {"code": "idempotency_key_reused", "message": "that key was used"}, "that key was used"),
    (409, {"code": "sold_out", "message": "x"}, "sold out"),
    (500, None, "Something went wrong on our side"),  # not even JSON: a proxy's error page
]


def refusal(status: int, error: dict[str, Any] | None) -> Any:
    async def refuse(route: Any) -> None:
        body = "<html>Bad gateway</html>" if error is None else json.dumps({"error": error})
        await route.fulfill(status=status, body=body, content_type="application/json")

    return refuse


async def test_every_api_error_reads_as_a_sentence_never_raw_json(pay_api, browsing, users):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    page = await open_map(browsing, pay_api, screening.id, await users.one())
    await seat(page, screening.seat_ids[0]).click()
    book = page.get_by_role("button", name="Book")
    for status, error, human in ERRORS:
        await page.route("**/api/bookings/", refusal(status, error))
        await book.click()
        await page.locator(".side .error", has_text=human).wait_for(timeout=WAIT_MS)
        assert '{"error"' not in await page.locator("main").inner_text()
        await page.unroute("**/api/bookings/")
    # A real refusal from the server: an unknown promo code.
    await page.get_by_label("Promo code (optional)").fill("NOSUCHCODE")
    await book.click()
    await page.locator(".side .error", has_text="Promo code not accepted").wait_for(timeout=WAIT_MS)


async def test_titles_are_text_never_markup(pay_api, browsing):
    api = pay_api.client
    evil = '<img src=x onerror="window.__pwned=1">Evil & "Co"'
    movie = await api.post(
        "/api/admin/movies/",
        {"title": evil, "description": "<script>window.__pwned=2</script>", "duration_minutes": 90},
        token=api.staff_token,
    )
    assert movie.status == 201, movie
    hall = await api.post(
        "/api/admin/halls/", {"name": "H", "layout": LAYOUT}, token=api.staff_token
    )
    starts = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = {"movie_id": movie.body["id"], "hall_id": hall.body["id"], "starts_at": starts}
    reply = await api.post(
        "/api/admin/screenings/",
        {**body, "prices": PRICES, "currency": "usd"},
        token=api.staff_token,
    )
    assert reply.status == 201, reply
    browsing.base_url = str(pay_api.server.make_url("/")).rstrip("/")
    page = await browsing.page()
    await page.goto(f"/#/movie/{movie.body['id']}")
    await page.get_by_role("heading", name=evil).wait_for(timeout=WAIT_MS)
    assert await page.locator("main img").count() == 0
    assert await page.locator("main script").count() == 0
    assert await page.evaluate("window.__pwned") is None


async def test_general_admission_shows_a_quantity_picker(pay_api, browsing, users, pool):
    api = pay_api.client
    screening_id = await api.new_ga_screening(capacity=30)
    page = await open_map_ga(browsing, pay_api, screening_id, await users.one())
    assert await page.locator(".seatmap").count() == 0
    await page.locator("input.qty").first.fill("3")
    await page.get_by_role("button", name="Book").click()
    await page.locator(".countdown").wait_for(timeout=WAIT_MS)
    await page.get_by_text("General admission").first.wait_for(timeout=WAIT_MS)
    held = await pool.fetchval(
        "SELECT count(*) FROM reservations WHERE screening_id = $1 AND status = 'PENDING'",
        screening_id,
    )
    assert held == 3


async def open_map_ga(browsing: Browsing, api: PayApi, screening_id: int, token: str) -> Any:
    browsing.base_url = str(api.server.make_url("/")).rstrip("/")
    page = await browsing.page(token)
    await page.goto(f"/#/screening/{screening_id}")
    await page.locator("input.qty").first.wait_for(timeout=WAIT_MS)
    return page


async def test_with_the_stream_refused_the_map_polls_and_still_updates(
    pay_api, browsing, users, pool
):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    browsing.base_url = str(pay_api.server.make_url("/")).rstrip("/")
    page = await browsing.page()

    async def redis_down(route: Any) -> None:
        body = {"error": {"code": "live_unavailable", "message": "poll the seat map"}}
        await route.fulfill(
            status=503,
            body=json.dumps(body),
            content_type="application/json",
            headers={"Retry-After": "5"},
        )

    await page.route("**/events**", redis_down)
    await page.goto(f"/#/screening/{screening.id}")
    await page.locator(".mode", has_text="updating every few seconds").wait_for(timeout=WAIT_MS)
    target = screening.seat_ids[2]
    assert (await api.book(await users.one(), screening.id, [target])).status == 201
    await page.locator(f'.seat[data-seat-id="{target}"][data-status="LOCKED"]').wait_for(
        timeout=WAIT_MS
    )
    assert await live_reservations(pool, screening.id) == [(target, "PENDING")]


async def test_with_a_publishable_key_the_checkout_loads_stripe_elements(
    make_pay_api, stripe_fake, browsing, users
):
    keyed = await make_pay_api(stripe_publishable_key="pk_test_cinemacore")
    screening = await keyed.client.new_screening(layout=LAYOUT, prices=PRICES)
    booking = (
        await keyed.client.book(await users.one(), screening.id, screening.seat_ids[:1])
    ).body
    browsing.base_url = str(keyed.server.make_url("/")).rstrip("/")
    page = await browsing.page(await users.one())
    # Not this buyer's booking: the page says so in words.
    await page.goto(f"/#/booking/{booking['id']}")
    await page.locator(".error").wait_for(timeout=WAIT_MS)
    token = await users.one()
    mine = (await keyed.client.book(token, screening.id, screening.seat_ids[1:2])).body
    page = await browsing.page(token)
    await page.goto(f"/#/booking/{mine['id']}")
    # Stripe.js comes from Stripe's host (the one outside file): offline it cannot load,
    # and the page says so instead of offering the test-card form.
    await page.get_by_text("The payment form could not be loaded").wait_for(timeout=WAIT_MS)
    assert await page.get_by_role("button", name="Use the test card").count() == 0
    assert browsing.outside == ["https://js.stripe.com/v3/"]
    browsing.outside.clear()


async def test_admin_refunds_a_seat_and_downloads_the_sales_report(
    pay_api, stripe_fake, browsing, users, pool
):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    buyer = await users.one()
    seats = screening.seat_ids[:2]
    booking = await confirmed_booking(pay_api, stripe_fake, buyer, seats, screening.id)
    browsing.base_url = str(pay_api.server.make_url("/")).rstrip("/")
    admin = await browsing.page(await users.one(role=Role.ADMIN))
    admin.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await admin.goto(f"/staff/#/booking/{booking['id']}")
    await admin.locator(f"#refund-{seats[0]}").check()
    await admin.get_by_label("Reason").fill("seat broken")
    await admin.get_by_role("button", name="Refund", exact=True).click()
    # The notice, not the booking's line, which also says it once the page has re-read it.
    await admin.locator("#notice", has_text="Refunded 10.00 USD").wait_for(timeout=WAIT_MS)
    await admin.goto(f"/staff/#/screening/{screening.id}")
    await admin.locator(".report").wait_for(timeout=WAIT_MS)
    async with admin.expect_download() as info:
        await admin.get_by_role("button", name="Download CSV").click()
    download = await info.value
    csv = await asyncio.to_thread(Path(await download.path()).read_text)
    assert csv.splitlines()[0].startswith("section"), csv[:200]
    # The refunded seat is on sale again, the other still sold.
    assert await live_reservations(pool, screening.id) == [(seats[1], "CONFIRMED")]


async def test_my_bookings_lists_them_and_cancels_a_pending_one(pay_api, browsing, users, pool):
    api = pay_api.client
    screening = await api.new_screening(layout=LAYOUT, prices=PRICES)
    token = await users.one()
    booking = (await api.book(token, screening.id, screening.seat_ids[:2])).body
    browsing.base_url = str(pay_api.server.make_url("/")).rstrip("/")
    page = await browsing.page(token, width=375)  # a phone
    await page.goto("/#/bookings")
    card = page.locator(f'.card[data-reference="{booking["reference"]}"]')
    await card.get_by_text("PENDING").wait_for(timeout=WAIT_MS)
    await card.get_by_role("button", name="Cancel").click()
    await page.get_by_text(f"Booking {booking['reference']} cancelled").wait_for(timeout=WAIT_MS)
    await page.locator(
        f'.card[data-reference="{booking["reference"]}"]', has_text="CANCELLED"
    ).wait_for(timeout=WAIT_MS)
    assert await live_reservations(pool, screening.id) == []


async def test_a_cancelled_screening_says_so_and_offers_no_seats(pay_api, browsing, users, pool):
    """A link to a screening cancelled since: the page says so, shows no seat map and no Book
    button, and the movie's page no longer lists it."""
    api = pay_api.client
    made = await api.new_screening(layout=LAYOUT, prices=PRICES)
    movie_id = (await api.get(f"/api/screenings/{made.id}/")).body["movie_id"]
    admin = await users.one(role=Role.ADMIN)
    reply = await api.post(
        f"/api/admin/screenings/{made.id}/cancel", {"reason": "storm"}, token=admin
    )
    assert reply.status == 202, reply
    browsing.base_url = str(pay_api.server.make_url("/")).rstrip("/")
    page = await browsing.page(await users.one())
    await page.goto(f"/#/screening/{made.id}")
    await page.get_by_text("This screening has been cancelled").wait_for(timeout=WAIT_MS)
    assert await page.locator(".seatmap").count() == 0
    assert await page.get_by_role("button", name="Book").count() == 0
    await page.goto(f"/#/movie/{movie_id}")
    await page.get_by_text("No upcoming screenings.").wait_for(timeout=WAIT_MS)
    assert await live_reservations(pool, made.id) == []
