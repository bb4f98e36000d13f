"""One SSE viewer's outbox: bounded, so a viewer that does not keep up is dropped (its stream
closed; the browser reconnects and resyncs) instead of holding memory for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable


class Viewer:
    def __init__(self, client: str, limit: int, on_drop: Callable[[], None] = lambda: None):
        self.client = client
        self._frames: deque[bytes] = deque()
        self._count = 0  # frames in self._frames (an entry may carry several)
        self._limit = limit
        self._wake = asyncio.Event()
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
        self._wake.set()

    def drop(self) -> None:
        """End the stream: forget what is queued and close the connection."""
        if self.dropped:
            return
        self.dropped = True
        self._frames.clear()
        self._count = 0
        self._wake.set()
        self._on_drop()

    def on_drop(self, callback: Callable[[], None]) -> None:
        self._on_drop = callback

    async def take(self, wait_seconds: float) -> list[bytes]:
        """Everything queued, waiting up to `wait_seconds` for something; [] on timeout or drop."""
        if not self._frames and not self.dropped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_seconds)
        self._wake.clear()
        frames = list(self._frames)
        self._frames.clear()
        self._count = 0
        return frames

    @property
    def queued(self) -> int:
        """Frames waiting to be written."""
        return self._count
