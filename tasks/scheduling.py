"""The API side of expiry: schedule a booking's expiry task for its deadline."""

from __future__ import annotations

import asyncio
import time

from cinema.booking.model import Booking
from tasks.queue import ExpiryQueue


class TaskiqExpiryScheduler:
    """Implements cinema.booking.ports.ExpiryScheduler with a per-booking Taskiq schedule.

    A failure raises (the booking service logs it and keeps the booking): nothing is lost,
    since the deadline lives in PostgreSQL and the worker's reconciler ends overdue bookings.
    While Redis is unreachable, further attempts are skipped for a moment so bookings do
    not each pay a connect timeout.
    """

    def __init__(
        self, queue: ExpiryQueue, timeout_seconds: float, retry_after_seconds: float = 1.0
    ) -> None:
        self._queue = queue
        self._timeout = timeout_seconds
        self._retry_after = retry_after_seconds
        self._down_until = 0.0

    async def schedule(self, booking: Booking) -> None:
        if time.monotonic() < self._down_until:
            raise ConnectionError("expiry schedules skipped: Redis was unreachable just now")
        try:
            async with asyncio.timeout(self._timeout):
                await self._queue.schedule(booking.id, booking.expires_at)
        except Exception:
            self._down_until = time.monotonic() + self._retry_after
            raise
