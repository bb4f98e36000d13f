"""Screenshots of the web app for docs/img/ (README, "Web app"), taken with Playwright and
Debian's Chromium from a running demo (./scripts/demo.sh, which pays through localstripe):

    ./scripts/demo.sh &
    .venv/bin/python scripts/screenshots.py http://127.0.0.1:8000

It signs in as the demo's customer and box office users, picks two seats of the first seated
screening, books them, pays with the test card and checks one ticket in at the door."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
WAIT_MS = 30_000


def call(base: str, path: str, body: Any = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def token(base: str, email: str, password: str) -> str:
    return str(
        call(base, "/api/auth/token/", {"email": email, "password": password})["access_token"]
    )


async def page_as(browser: Any, base: str, who: tuple[str, str], width: int) -> Page:
    context = await browser.new_context(
        base_url=base, viewport={"width": width, "height": 900}, device_scale_factor=1
    )
    await context.add_init_script(
        f"sessionStorage.setItem('cinemacore.token', {token(base, *who)!r});"
        f"sessionStorage.setItem('cinemacore.email', {who[0]!r});"
    )
    return await context.new_page()


def free_seats(base: str, screening_id: int, count: int) -> list[int]:
    """`count` free seats side by side, from the middle of the hall on."""
    seats = call(base, f"/api/screenings/{screening_id}/seats/")["seats"]
    for start in range(len(seats) // 2, len(seats) - count):
        run = seats[start : start + count]
        if all(
            s["status"] == "AVAILABLE"
            and s["row"] == run[0]["row"]
            and s["seat"] == run[0]["seat"] + i
            for i, s in enumerate(run)
        ):
            return [s["id"] for s in run]
    raise SystemExit("no free seats side by side left: restart the demo")


async def buyer(browser: Any, base: str, screening_id: int) -> str:
    customer = ("customer@cinema.example", "customer-password")
    phone = await page_as(browser, base, customer, 375)
    await phone.goto(f"/#/screening/{screening_id}")
    await phone.locator(".mode", has_text="live").wait_for(timeout=WAIT_MS)
    await phone.screenshot(path=OUT / "buyer-map-phone.png", full_page=True)
    page = await page_as(browser, base, customer, 1200)
    await page.goto(f"/#/screening/{screening_id}")
    await page.locator(".mode", has_text="live").wait_for(timeout=WAIT_MS)
    for seat_id in free_seats(base, screening_id, 2):
        await page.locator(f'.seat[data-seat-id="{seat_id}"]').click()
    await page.screenshot(path=OUT / "buyer-map.png", full_page=True)
    await page.get_by_role("button", name="Book").click()
    await page.locator(".countdown").wait_for(timeout=WAIT_MS)
    await page.get_by_role("button", name="Use the test card").click()
    await page.screenshot(path=OUT / "checkout.png", full_page=True)
    await page.locator("#pay").click()
    await page.locator(".booking-status", has_text="CONFIRMED").wait_for(timeout=WAIT_MS)
    await page.locator(".ticket img").first.wait_for(timeout=WAIT_MS)
    await page.screenshot(path=OUT / "tickets.png", full_page=True)
    return (await page.locator(".ticket code").first.inner_text()).strip()


async def staff(browser: Any, base: str, screening_id: int, code: str) -> None:
    clerk = ("boxoffice@cinema.example", "boxoffice-password")
    page = await page_as(browser, base, clerk, 1200)
    await page.goto("/staff/")
    await page.locator("table").wait_for(timeout=WAIT_MS)
    await page.screenshot(path=OUT / "staff-dashboard.png", full_page=True)
    admin = await page_as(browser, base, ("staff@cinema.example", "staff-password"), 1200)
    await admin.goto(f"/staff/#/screening/{screening_id}")
    await admin.locator(".report").wait_for(timeout=WAIT_MS)  # the sales report: admins only
    await admin.screenshot(path=OUT / "staff-seatmap.png", full_page=True)
    await page.goto(f"/staff/#/checkin/{screening_id}")
    field = page.locator("#code")
    await field.fill(code)
    await field.press("Enter")
    await page.locator(".verdict").wait_for(timeout=WAIT_MS)
    await page.screenshot(path=OUT / "staff-checkin.png", full_page=True)


async def main(base: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    screenings = call(base, "/api/screenings/?limit=500")
    seated = next(s for s in screenings if s["hall_id"] is not None and len(s["ticket_types"]) > 1)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            code = await buyer(browser, base, seated["id"])
            await staff(browser, base, seated["id"], code)
        finally:
            await browser.close()
    print(f"screenshots in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8000"))
