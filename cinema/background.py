"""Work done off the request path in this process, retried with backoff; drained on shutdown.
With FOLLOW_UPS=taskiq the worker runs these follow-ups as Taskiq tasks (tasks/follow_ups.py)
and BackgroundFollowUps is only the fallback for a task that could not be queued."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cinema.booking.errors import PaymentProviderUnavailable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


async def cancel_until_done(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it, cancelling again every second until it ends: a
    cancellation can be lost on the way (a timeout inside a client library firing at the same
    moment turns it into an error that a loop surviving errors swallows), and no close may
    hang on it. What the task raised is dropped: it is being stopped."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


def _retryable(exc: Exception) -> bool:
    return not (isinstance(exc, PaymentProviderUnavailable) and not exc.retryable)


class Background:
    def __init__(self, attempts: int = 6, first_delay: float = 0.5, max_delay: float = 30.0):
        self._attempts = attempts
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: set[asyncio.Task[None]] = set()  # between attempts: nothing in flight
        self._closing = False

    def spawn(self, name: str, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(self._run(name, job), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, name: str, job: Job) -> None:
        delay = self._first_delay
        for attempt in range(1, self._attempts + 1):
            try:
                await job()
                return
            except Exception as exc:
                if attempt == self._attempts or not _retryable(exc) or self._closing:
                    log.error("%s failed for good after %d attempt(s): %r", name, attempt, exc)
                    return
                log.warning(
                    "%s failed (attempt %d), retrying in %.1f s: %r", name, attempt, delay, exc
                )
            task = asyncio.current_task()
            assert task is not None
            self._waiting.add(task)
            try:
                await asyncio.sleep(delay)
            finally:
                self._waiting.discard(task)
            delay = min(delay * 2, self._max_delay)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Give jobs in flight a moment to finish, then cancel the rest; a job only waiting
        to retry is dropped at once (logged: in-process jobs do not survive a restart)."""
        self._closing = True
        for task in self._waiting:
            log.warning("dropping %s at shutdown", task.get_name())
            task.cancel()
        if not self._tasks:
            return
        _, still = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        await asyncio.gather(*(cancel_until_done(task) for task in still))


def _limited(
    limit: asyncio.Semaphore, call: Callable[[int], Awaitable[object]]
) -> Callable[[int], Awaitable[object]]:
    async def run(booking_id: int) -> object:
        async with limit:
            return await call(booking_id)

    return run


class BackgroundFollowUps:
    """FollowUps run as retried in-process background jobs. A burst of confirmations (each
    one an email: a QR code to draw, an SMTP conversation) runs a few at a time, so it does
    not crowd out the requests this process serves."""

    def __init__(
        self,
        background: Background,
        cancel_payment: Callable[[int], Awaitable[object]],
        send_ticket: Callable[[int], Awaitable[object]],
        concurrency: int = 4,
    ) -> None:
        self._background = background
        self._cancel_payment = _limited(asyncio.Semaphore(concurrency), cancel_payment)
        self._send_ticket = _limited(asyncio.Semaphore(concurrency), send_ticket)

    async def cancel_payment(self, booking_id: int) -> None:
        self._background.spawn(
            f"cancel payment of booking {booking_id}", lambda: self._cancel_payment(booking_id)
        )

    async def send_ticket(self, booking_id: int) -> None:
        self._background.spawn(
            f"ticket email of booking {booking_id}", lambda: self._send_ticket(booking_id)
        )
