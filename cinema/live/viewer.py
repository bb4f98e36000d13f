"""One SSE viewer: bounded, so a viewer that does not keep up is dropped (its stream closed;
the browser reconnects and resyncs) instead of holding memory for it.

Once its stream has started, a viewer is written to straight from the hub's flush, through
an Outlet (the connection, cinema/api/events.py): no task per viewer wakes for a batch.
Thousands of viewers share each batch; a task wake per viewer per batch was a third of the
fan-out's CPU (docs/performance.md). Until then (between `watch()` and the response's
headers) what it is sent waits in an outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Batch:
    """Frames sent to every viewer of a screening at once, as one bytes object. `wire` is
    free for the outlets: the first one that needs the bytes framed for its connection (HTTP
    chunked coding) keeps them there, and every other viewer's outlet reuses them."""

    __slots__ = ("data", "frames", "wire")

    def __init__(self, data: bytes, frames: int = 1) -> None:
        self.data = data
        self.frames = frames
        self.wire: bytes | None = None


class Outlet(Protocol):
    def write(self, batch: Batch) -> None:
        """Send at once or buffer; raises ConnectionError once the connection is gone."""
        ...

    def backed_up(self) -> bool:
        """Whether more than the connection's bound already waits unsent in this process."""
        ...


class Viewer:
    def __init__(self, client: str, limit: int, on_drop: Callable[[], None] = lambda: None):
        self.client = client
        self._outbox: list[Batch] = []  # before the stream starts
        self._outlet: Outlet | None = None
        # Frames the viewer is behind: in the outbox, or, once attached, written while its
        # connection was backed up (what an outbox would hold if it still had one).
        self._count = 0
        self._limit = limit
        self._closed: asyncio.Future[None] | None = None
        self._on_drop = on_drop
        self.dropped = False
        self.overflowed = False  # dropped for not keeping up

    def send(self, data: bytes, frames: int = 1) -> None:
        self.deliver(Batch(data, frames))

    def deliver(self, batch: Batch) -> None:
        """Send `batch` (shared with the other viewers, never copied here). A viewer that is
        already behind and would be more than `limit` frames behind is dropped; one batch
        alone, however long, is not (a viewer that keeps up is not behind when it comes)."""
        if self.dropped:
            return
        outlet = self._outlet
        behind = bool(self._outbox) if outlet is None else outlet.backed_up()
        if behind and self._count and self._count + batch.frames > self._limit:
            self.overflowed = True
            self.drop()
            return
        if outlet is None:
            self._outbox.append(batch)
            self._count += batch.frames
            return
        self._count = self._count + batch.frames if behind else 0
        try:
            outlet.write(batch)
        except ConnectionError:
            self.drop()

    def attach(self, outlet: Outlet) -> None:
        """The stream has started: send what waited and write every later batch at once."""
        if self.dropped:
            return
        waiting, self._outbox = self._outbox, []
        self._outlet = outlet
        if waiting:
            joined = b"".join(batch.data for batch in waiting)
            self._count = 0
            self.deliver(Batch(joined, sum(batch.frames for batch in waiting)))

    def drop(self) -> None:
        """End the stream: forget what is queued and close the connection."""
        if self.dropped:
            return
        self.dropped = True
        self._outbox = []
        self._count = 0
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._on_drop()

    def on_drop(self, callback: Callable[[], None]) -> None:
        self._on_drop = callback

    async def closed(self) -> None:
        """Wait until the viewer is dropped (it never ends by itself)."""
        if not self.dropped:
            self._closed = asyncio.get_running_loop().create_future()
            await self._closed

    @property
    def queued(self) -> int:
        """Frames this viewer is behind (held for it in this process)."""
        return self._count
