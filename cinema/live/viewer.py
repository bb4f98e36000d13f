"""One SSE viewer's outbox: bounded, so a viewer that does not keep up is dropped (its stream
closed; the browser reconnects and resyncs) instead of holding memory for it.

A viewer's writer waits on a bare future, not on an Event with a timeout: thousands of
viewers wake for every batch, and asyncio.wait_for makes a task and a timer each time
(heartbeats come from one ticker for all viewers instead, cinema/live/service.py)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Viewer:
    def __init__(self, client: str, limit: int, on_drop: Callable[[], None] = lambda: None):
        self.client = client
        self._frames: deque[bytes] = deque()
        self._count = 0  # frames in self._frames (an entry may carry several)
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._on_drop = on_drop
        self.dropped = False
        self.overflowed = False  # dropped for not keeping up

    def send(self, data: bytes, frames: int = 1) -> None:
        """Queue `frames` frames (shared bytes, never copied). A viewer that still has
        earlier frames unsent and would hold more than `limit` is dropped; one batch alone,
        however long, is not (a viewer that keeps up has an empty outbox when it comes)."""
        if self.dropped:
            return
        if self._frames and self._count + frames > self._limit:
            self.overflowed = True
            self.drop()
            return
        self._frames.append(data)
        self._count += frames
        self._wake()

    def drop(self) -> None:
        """End the stream: forget what is queued and close the connection."""
        if self.dropped:
            return
        self.dropped = True
        self._frames.clear()
        self._count = 0
        self._wake()
        self._on_drop()

    def on_drop(self, callback: Callable[[], None]) -> None:
        self._on_drop = callback

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[bytes]:
        """Everything queued, waiting for something first; [] once dropped."""
        if not self._frames and not self.dropped:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        frames = list(self._frames)
        self._frames.clear()
        self._count = 0
        return frames

    @property
    def queued(self) -> int:
        """Frames waiting to be written."""
        return self._count
