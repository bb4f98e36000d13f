"""A small test client so tests read like usage: `await api.book(token, screening, [seat])`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

_counter = itertools.count(1)


async def wait_for(
    predicate: Callable[[], Awaitable[bool]],
    within: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll an async predicate until it holds; fail, naming `what`, once the deadline passes."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    def __repr__(self) -> str:  # shows up in assertion messages
        return f"Reply({self.status}, {self.body!r})"


@dataclass
class Screening:
    id: int
    hall_id: int
    seat_ids: list[int]


class ApiClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, staff_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.staff_token = staff_token

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
    ) -> Reply:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.base_url + path, json=json, data=data, headers=all_headers
        ) as resp:
            raw = await resp.read()
            try:
                body: Any = await resp.json(content_type=None) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return Reply(resp.status, body, dict(resp.headers))

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, json=json, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)

    # --- usage-level helpers -------------------------------------------------------------
    async def new_user(self, password: str = "correct horse battery") -> str:
        """Register a fresh customer and return its access token."""
        email = f"user{next(_counter)}-{id(self)}@example.com"
        reply = await self.post("/api/auth/register", {"email": email, "password": password})
        assert reply.status == 201, reply
        reply = await self.post("/api/auth/token", {"email": email, "password": password})
        assert reply.status == 200, reply
        return str(reply.body["access_token"])

    async def new_screening(
        self,
        layout: dict[str, Any] | None = None,
        prices: dict[str, str] | None = None,
        starts_in: timedelta = timedelta(days=1),
        currency: str = "usd",
        **extra: Any,
    ) -> Screening:
        """`extra`: more screening fields (ticket_types, fees, ...), sent as given."""
        movie = await self.post(
            "/api/admin/movies/",
            {"title": "Test Movie", "description": "", "duration_minutes": 100},
            token=self.staff_token,
        )
        assert movie.status == 201, movie
        hall = await self.post(
            "/api/admin/halls/",
            {"name": "Test Hall", "layout": layout or {"rows": [{"label": "A", "seats": 10}]}},
            token=self.staff_token,
        )
        assert hall.status == 201, hall
        screening = await self.post(
            "/api/admin/screenings/",
            {
                "movie_id": movie.body["id"],
                "hall_id": hall.body["id"],
                "starts_at": (datetime.now(UTC) + starts_in).isoformat(),
                "prices": prices or {c: "10.00" for c in hall.body["categories"]},
                "currency": currency,
                **extra,
            },
            token=self.staff_token,
        )
        assert screening.status == 201, screening
        seats = await self.get(f"/api/screenings/{screening.body['id']}/seats/")
        return Screening(
            screening.body["id"], hall.body["id"], [s["id"] for s in seats.body["seats"]]
        )

    async def new_ga_screening(
        self,
        capacity: int,
        price: str = "20.00",
        max_tickets_per_customer: int | None = None,
        starts_in: timedelta = timedelta(days=1),
    ) -> int:
        """A general-admission screening (no hall, a capacity); returns its id."""
        movie = await self.post(
            "/api/admin/movies/",
            {"title": "Open Air", "description": "", "duration_minutes": 100},
            token=self.staff_token,
        )
        assert movie.status == 201, movie
        body: dict[str, Any] = {
            "movie_id": movie.body["id"],
            "capacity": capacity,
            "starts_at": (datetime.now(UTC) + starts_in).isoformat(),
            "prices": {"general": price},
            "currency": "usd",
        }
        if max_tickets_per_customer is not None:
            body["max_tickets_per_customer"] = max_tickets_per_customer
        screening = await self.post("/api/admin/screenings/", body, token=self.staff_token)
        assert screening.status == 201, screening
        return int(screening.body["id"])

    async def book_places(
        self, token: str, screening_id: int, quantity: int, key: str | None = None
    ) -> Reply:
        headers = {"Idempotency-Key": key} if key else None
        return await self.post(
            "/api/bookings/",
            {"screening_id": screening_id, "quantity": quantity},
            token=token,
            headers=headers,
        )

    async def place_counts(self, screening_id: int) -> dict[str, int]:
        reply = await self.get(f"/api/screenings/{screening_id}/seats/")
        assert reply.status == 200, reply
        assert reply.body["seats"] == []
        return dict(reply.body["counts"])

    async def book(
        self, token: str, screening_id: int, seat_ids: list[int], key: str | None = None
    ) -> Reply:
        headers = {"Idempotency-Key": key} if key else None
        return await self.post(
            "/api/bookings/",
            {"screening_id": screening_id, "seat_ids": seat_ids},
            token=token,
            headers=headers,
        )

    async def book_with(self, token: str, screening_id: int, **body: Any) -> Reply:
        """POST /api/bookings/ with any body fields (seats=[...], promo_code=...)."""
        return await self.post(
            "/api/bookings/", {"screening_id": screening_id, **body}, token=token
        )

    async def seat_statuses(self, screening_id: int) -> dict[int, str]:
        reply = await self.get(f"/api/screenings/{screening_id}/seats/")
        assert reply.status == 200, reply
        return {s["id"]: s["status"] for s in reply.body["seats"]}
