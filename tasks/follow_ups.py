"""Follow-ups of a booking's state change as Taskiq tasks: the ticket email of a confirmed
booking and the Stripe cancel of an intent whose booking ended unpaid.

The API (and the worker itself) kick `cinema.send_ticket` / `cinema.cancel_payment` onto the
task queue (tasks/queue.py); `cinema worker` runs them with the service-level objects it hands to
`serve` (TicketMailer.send, PaymentCanceller.cancel: one attempt each, safe to repeat, raise
when a retry is worth it).

Retries are re-kicks through the schedule source, not taskiq's retry middleware: a failed
attempt adds a timed schedule (`<task>-<booking>-<attempt>`) due after an exponential
backoff, and the worker's scheduler loop sends it like any expiry schedule. On our Redis
list broker the middleware's `delay` label does nothing (it would retry at once, in a tight
loop, while SMTP is down); given the schedule source it does the same thing as here, but
would also apply to the expiry task, log a traceback per attempt, and retry errors that
will never succeed. A retry that lives in Redis survives a worker restart. Past
`attempts` the task gives up with an ERROR log line; the worker's sweeps (unsent tickets,
open intents of ended bookings) remain the backstop for anything lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from cinema.booking.errors import PaymentProviderUnavailable
from cinema.booking.ports import FollowUps
from tasks.metrics import FOLLOW_UP_RUNS
from tasks.queue import TaskQueue

log = logging.getLogger(__name__)

SEND_TICKET_TASK = "cinema.send_ticket"
CANCEL_PAYMENT_TASK = "cinema.cancel_payment"

Call = Callable[[int], Awaitable[object]]


def _worth_retrying(exc: Exception) -> bool:
    return not (isinstance(exc, PaymentProviderUnavailable) and not exc.retryable)


def retry_delay(attempt: int, first: float, most: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): first, 2 x first, ..."""
    return float(min(first * 2 ** (attempt - 1), most))


class FollowUpTasks:
    """The two follow-up tasks on the task queue's broker. The API only kicks them; the
    worker also calls `serve` and then runs them."""

    def __init__(
        self,
        queue: TaskQueue,
        *,
        attempts: int = 8,
        first_delay_seconds: float = 1.0,
        max_delay_seconds: float = 120.0,
    ) -> None:
        self._queue = queue
        self._attempts = attempts
        self._first_delay = first_delay_seconds
        self._max_delay = max_delay_seconds
        self._calls: dict[str, Call] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}

        async def send_ticket(booking_id: int, attempt: int = 1) -> None:
            await self._run("send_ticket", booking_id, attempt)

        async def cancel_payment(booking_id: int, attempt: int = 1) -> None:
            await self._run("cancel_payment", booking_id, attempt)

        broker = queue.broker
        self.send_ticket_task = broker.register_task(send_ticket, task_name=SEND_TICKET_TASK)
        self.cancel_payment_task = broker.register_task(
            cancel_payment, task_name=CANCEL_PAYMENT_TASK
        )

    def serve(self, *, send_ticket: Call, cancel_payment: Call, concurrency: int = 4) -> None:
        """Make this process run the tasks (the worker). At most `concurrency` of each kind
        run at once: a burst of confirmations does not crowd out the expiry tasks."""
        self._calls = {"send_ticket": send_ticket, "cancel_payment": cancel_payment}
        self._limits = {name: asyncio.Semaphore(concurrency) for name in self._calls}

    async def kick_send_ticket(self, booking_id: int) -> None:
        await self.send_ticket_task.kiq(booking_id)

    async def kick_cancel_payment(self, booking_id: int) -> None:
        await self.cancel_payment_task.kiq(booking_id)

    async def _run(self, name: str, booking_id: int, attempt: int) -> None:
        call = self._calls.get(name)
        if call is None:
            raise RuntimeError(f"this process does not run {name} tasks")
        try:
            async with self._limits[name]:
                did = await call(booking_id)
        except Exception as exc:
            await self._after_failure(name, booking_id, attempt, exc)
            return
        FOLLOW_UP_RUNS.labels(name, "done" if did else "noop").inc()

    async def _after_failure(
        self, name: str, booking_id: int, attempt: int, exc: Exception
    ) -> None:
        if attempt >= self._attempts or not _worth_retrying(exc):
            FOLLOW_UP_RUNS.labels(name, "gave_up").inc()
            log.error(
                "%s for booking %s gave up after %d attempt(s): %r", name, booking_id, attempt, exc
            )
            return
        delay = retry_delay(attempt, self._first_delay, self._max_delay)
        task = self.send_ticket_task if name == "send_ticket" else self.cancel_payment_task
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        try:
            await (
                task.kicker()
                .with_schedule_id(f"{name}-{booking_id}-{attempt + 1}")
                .schedule_by_time(self._queue.schedules, due, booking_id, attempt + 1)
            )
        except Exception as kick_exc:
            FOLLOW_UP_RUNS.labels(name, "gave_up").inc()
            log.error(
                "%s for booking %s failed (%r) and could not be re-scheduled (%r); left to"
                " the worker's sweep",
                name,
                booking_id,
                exc,
                kick_exc,
            )
            return
        FOLLOW_UP_RUNS.labels(name, "retry").inc()
        log.warning(
            "%s for booking %s failed (attempt %d), retrying in %.0f s: %r",
            name,
            booking_id,
            attempt,
            delay,
            exc,
        )


class TaskiqFollowUps:
    """Implements cinema.booking.ports.FollowUps by kicking the follow-up tasks for the
    worker. If the kick fails (Redis down or slower than `timeout_seconds`), the job runs in
    `fallback` (in-process retried jobs) so nothing is lost; while Redis was unreachable a
    moment ago, the fallback is used at once, so callers do not each wait for a dead Redis."""

    def __init__(
        self,
        tasks: FollowUpTasks,
        fallback: FollowUps,
        timeout_seconds: float,
        retry_after_seconds: float = 1.0,
    ) -> None:
        self._tasks = tasks
        self._fallback = fallback
        self._timeout = timeout_seconds
        self._retry_after = retry_after_seconds
        self._down_until = 0.0

    async def send_ticket(self, booking_id: int) -> None:
        if not await self._kick(self._tasks.kick_send_ticket, "send_ticket", booking_id):
            await self._fallback.send_ticket(booking_id)

    async def cancel_payment(self, booking_id: int) -> None:
        if not await self._kick(self._tasks.kick_cancel_payment, "cancel_payment", booking_id):
            await self._fallback.cancel_payment(booking_id)

    async def _kick(self, kick: Call, name: str, booking_id: int) -> bool:
        if time.monotonic() < self._down_until:
            log.warning(
                "%s for booking %s runs in this process: Redis was unreachable", name, booking_id
            )
            return False
        try:
            await asyncio.wait_for(kick(booking_id), self._timeout)
        except Exception as exc:
            self._down_until = time.monotonic() + self._retry_after
            log.warning(
                "could not queue %s for booking %s (%r); running it in this process",
                name,
                booking_id,
                exc,
            )
            return False
        return True
