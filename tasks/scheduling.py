"""The API side of expiry: schedule a booking's expiry task for its deadline."""

from __future__ import annotations

import asyncio
import logging
import time

from cinema.booking.model import Booking
from tasks.queue import TaskQueue

log = logging.getLogger(__name__)


class TaskiqExpiryScheduler:
    """Implements cinema.booking.ports.ExpiryScheduler with a per-booking Taskiq schedule.

    `schedule` only queues the booking in memory: one writer task sends every queued
    schedule in one pipelined round trip, off the request path, so a winner's 201 does not
    wait on Redis and a burst of bookings costs one Redis write per batch. Losing a batch
    (Redis down, the process killed) loses nothing that matters: the deadline lives in
    PostgreSQL, and the worker's reconciler ends overdue bookings. While Redis is
    unreachable, `schedule` raises at once for a moment (the service counts it).
    """

    def __init__(
        self, queue: TaskQueue, timeout_seconds: float, retry_after_seconds: float = 1.0
    ) -> None:
        self._queue = queue
        self._timeout = timeout_seconds
        self._retry_after = retry_after_seconds
        self._down_until = 0.0
        self._pending: list[Booking] = []
        self._writer: asyncio.Task[None] | None = None

    async def schedule(self, booking: Booking) -> None:
        if time.monotonic() < self._down_until:
            raise ConnectionError("expiry schedules skipped: Redis was unreachable just now")
        self._pending.append(booking)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="expiry-schedules")

    async def _write(self) -> None:
        await asyncio.sleep(0)  # let bookings finishing in the same loop turn join the batch
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with asyncio.timeout(self._timeout):
                    await self._queue.schedule_many([(b.id, b.expires_at) for b in batch])
            except Exception as exc:
                self._down_until = time.monotonic() + self._retry_after
                log.warning(
                    "could not schedule expiry of %d booking(s), the reconciler will end them: %r",
                    len(batch),
                    exc,
                )

    async def close(self) -> None:
        """Send what is still queued (called on shutdown, before the queue closes)."""
        if self._writer is not None:
            await self._writer
