"""One SSE viewer: bounded, so a viewer that does not keep up is dropped (its stream closed;
the browser reconnects and resyncs) instead of holding memory for it.

Once its stream has started, a viewer is written to straight from the hub's flush, through
an Outlet (the connection, cinema/api/events.py): no task per viewer wakes for a batch
(thousands of viewers share each batch; the wakes and the per-viewer `response.write`
coroutines were 60 % of the fan-out's CPU, docs/performance.md). What the connection
cannot take yet (before the response's headers are out, or while more than its bound waits
unsent) waits in an outbox of shared references instead of being copied into the
transport's buffer; the hub retries it at each flush."""

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
        # What the connection cannot take yet (before the stream starts, or while it is
        # backed up): references to batches shared by every viewer, 8 bytes a batch here.
        self._outbox: list[Batch] = []
        self._count = 0  # frames in the outbox (a batch may carry several)
        self._outlet: Outlet | None = None
        self._limit = limit
        self._closed: asyncio.Future[None] | None = None
        self._on_drop = on_drop
        self.dropped = False
        self.overflowed = False  # dropped for not keeping up

    def send(self, data: bytes, frames: int = 1) -> None:
        self.deliver(Batch(data, frames))

    def deliver(self, batch: Batch) -> bool:
        """Write `batch` (shared with the other viewers, never copied here) or, if the
        connection cannot take it yet, keep it in the outbox; returns whether the outbox holds
        anything (then call catch_up() later). A viewer whose outbox already holds something
        and would hold more than `limit` frames is dropped; one batch alone, however long, is
        not (a viewer that keeps up has an empty outbox when it comes)."""
        if self.dropped:
            return False
        outlet = self._outlet
        if not self._outbox and outlet is not None and not outlet.backed_up():
            self._write(outlet, batch)
            return False
        if self._outbox and self._count + batch.frames > self._limit:
            self.overflowed = True
            self.drop()
            return False
        self._outbox.append(batch)
        self._count += batch.frames
        return True

    def catch_up(self) -> bool:
        """Write the outbox in one piece if the connection can take it now; returns whether
        the viewer is still behind."""
        outlet = self._outlet
        if self.dropped or not self._outbox:
            return False
        if outlet is None or outlet.backed_up():
            return True
        waiting, self._outbox, frames, self._count = self._outbox, [], self._count, 0
        if len(waiting) == 1:
            self._write(outlet, waiting[0])
        else:
            self._write(outlet, Batch(b"".join(batch.data for batch in waiting), frames))
        return False

    def attach(self, outlet: Outlet) -> None:
        """The stream has started: send what waited, and later batches as they come."""
        self._outlet = outlet
        self.catch_up()

    def _write(self, outlet: Outlet, batch: Batch) -> None:
        try:
            outlet.write(batch)
        except ConnectionError:
            self.drop()

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
        """Frames waiting in the outbox (what this process holds for the viewer)."""
        return self._count
