"""A small Server-Sent-Events client for tests (and bench/fanout.py's idea of a viewer): reads
frames off a real HTTP stream and keeps the seat statuses they describe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

STATUS_OF = {"held": "LOCKED", "released": "AVAILABLE", "sold": "SOLD"}


@dataclass
class Event:
    id: int | None
    name: str
    data: Any
    received: float  # time.time() on arrival


@dataclass
class Stream:
    response: aiohttp.ClientResponse
    events: list[Event] = field(default_factory=list)
    seats: dict[int, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    last_id: int | None = None
    pings: int = 0
    ended: bool = False

    async def _frame(self) -> Event | None:
        fields: dict[str, str] = {}
        while True:
            raw = await self.response.content.readline()
            if not raw:
                self.ended = True
                return None
            line = raw.decode().rstrip("\n")
            if not line:
                if "event" in fields or "data" in fields:
                    break
                continue
            if line.startswith(":"):
                self.pings += 1
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        event_id = int(fields["id"]) if "id" in fields else None
        data = orjson.loads(fields["data"]) if "data" in fields else None
        return Event(event_id, fields.get("event", "message"), data, time.time())

    def _apply(self, event: Event) -> None:
        self.events.append(event)
        if event.id is not None:
            self.last_id = event.id
        if event.name == "resync":
            self.seats = {s["id"]: s["status"] for s in event.data["seats"]}
        elif event.name in STATUS_OF:
            for seat_id in event.data["seat_ids"]:
                self.seats[seat_id] = STATUS_OF[event.name]
        if isinstance(event.data, dict) and "counts" in event.data:
            self.counts = event.data["counts"]

    async def next(self, within: float = 10.0) -> Event:
        event = await asyncio.wait_for(self._frame(), within)
        if event is None:
            raise AssertionError("the stream ended")
        self._apply(event)
        return event

    async def until(
        self, predicate: Callable[[Stream], bool], within: float = 10.0, what: str = "condition"
    ) -> None:
        """Read frames until `predicate(self)` holds; fail once `within` seconds pass."""
        deadline = time.monotonic() + within
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {within} s waiting for {what}")
            try:
                await self.next(left)
            except TimeoutError:
                raise AssertionError(f"timed out after {within} s waiting for {what}") from None

    def close(self) -> None:
        self.response.close()


async def open_stream(
    session: aiohttp.ClientSession,
    base_url: str,
    screening_id: int,
    last_event_id: int | None = None,
    headers: dict[str, str] | None = None,
) -> Stream:
    headers = dict(headers or {})
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    response = await session.get(
        f"{base_url}/api/screenings/{screening_id}/events",
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
    )
    assert response.status == 200, (response.status, await response.text())
    return Stream(response)
