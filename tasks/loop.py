"""`cinema worker`'s loop: the Taskiq receiver and scheduler in one process, plus the
reconciler that catches up on every overdue booking whatever happened to the tasks, and the
sweeps that run after each reconciliation (open intents, unsent tickets). cinema/bootstrap.py
builds it with its collaborators.

Receiver and scheduler share the process so a due task goes from the schedule to the queue
to the service within the same second: the scheduler re-reads schedules every second (the
taskiq CLI's default of 60 s made tasks up to a minute late).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.receiver import Receiver

from cinema.booking.service import BookingService
from tasks.metrics import SHOWS_FINISHED, SWEEPS, TASK_RUNS, LatenessWindow
from tasks.queue import MAX_EARLY_SECONDS, TaskQueue

log = logging.getLogger(__name__)

_TICK = timedelta(seconds=1)
# Re-read schedules on every tick. Equal to _TICK, SchedulerLoop's `now - updated_at >=
# interval` test fails on every other tick by a few microseconds: schedules 2 s stale.
_REFRESH = timedelta(seconds=0.5)
_SEND_PREFIX = "schedule_"  # SchedulerLoop names its send tasks "schedule_<id>"
_DRAIN_SECONDS = 10.0
_ATTEMPTS = 3
_RETRY_DELAY_SECONDS = 0.25

Sweep = Callable[[], Awaitable[object]]


class WorkerLoop:
    def __init__(
        self,
        service: BookingService,
        queue: TaskQueue,
        *,
        reconcile_every_seconds: float,
        batch_size: int,
        summary_every_seconds: float = 10.0,
        max_concurrent_tasks: int = 1000,  # most wait out their SCHEDULE_LEAD asleep
        sweeps: Sequence[Sweep] = (),
    ) -> None:
        self._service = service
        self._queue = queue
        self._reconcile_every = reconcile_every_seconds
        self._batch_size = batch_size
        self._summary_every = summary_every_seconds
        self._max_concurrent = max_concurrent_tasks
        self._sweeps = tuple(sweeps)  # run in order after each reconciliation
        self.window = LatenessWindow()

    async def expire(self, booking_id: int) -> None:
        """The task body: end the booking if it is still due; count and time it if so.
        A transient failure (PostgreSQL busy or restarting) is retried a few times; past
        that the reconciler ends the booking on its next sweep."""
        for attempt in range(_ATTEMPTS):
            try:
                ended = await self._service.expire(booking_id)
                break
            except Exception as exc:
                if attempt + 1 == _ATTEMPTS:
                    TASK_RUNS.labels("failed").inc()
                    log.error(
                        "expiry of booking %s failed (%r); left to the reconciler", booking_id, exc
                    )
                    return
                await asyncio.sleep(_RETRY_DELAY_SECONDS * 2**attempt)
        if ended is None:
            TASK_RUNS.labels("noop").inc()
            log.debug("expiry task of booking %s: nothing to end", booking_id)
            return
        TASK_RUNS.labels("expired").inc()
        late = self.window.record("task", ended)
        log.debug("booking %s expired %.3fs after its deadline", booking_id, late)

    async def reconcile(self) -> int:
        """End every overdue PENDING booking, batch by batch. Returns how many ended."""
        total = 0
        while True:
            ended = await self._service.expire_overdue(self._batch_size)
            for booking in ended:
                self.window.record("reconciler", booking)
            total += len(ended)
            if len(ended) < self._batch_size:
                SWEEPS.inc()
                return total

    async def finish_shows(self) -> int:
        """The show lifecycle, batch by batch: PENDING holds of started screenings end, then
        CONFIRMED bookings of ended ones become COMPLETED or NO_SHOW. Returns how many moved."""
        total = 0
        for step in (self._service.end_started, self._service.finish_ended):
            while True:
                moved = await step(self._batch_size)
                for booking in moved:
                    SHOWS_FINISHED.labels(booking.status.value).inc()
                total += len(moved)
                if len(moved) < self._batch_size:
                    break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down gracefully: no new sends, the running
        expiry tasks finish (up to 10 s), connections close."""
        broker = self._queue.broker
        broker.is_worker_process = True
        broker.is_scheduler_process = True
        self._queue.serve(self.expire)
        await broker.startup()
        for source in self._queue.scheduler.sources:
            await source.startup()

        finish = asyncio.Event()
        receiver = Receiver(
            broker,
            run_startup=False,
            max_async_tasks=self._max_concurrent,
            wait_tasks_timeout=_DRAIN_SECONDS,
        )
        receiving = asyncio.create_task(receiver.listen(finish), name="expiry-receiver")
        scheduling = asyncio.create_task(self._schedule_forever(), name="expiry-scheduler")
        sweeping = asyncio.create_task(self._reconcile_forever(), name="expiry-reconciler")
        summarising = asyncio.create_task(self._summarise_forever(), name="expiry-summary")
        log.info(
            "expiry worker started (reconcile every %ss, batches of %d)",
            self._reconcile_every,
            self._batch_size,
        )
        try:
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait(
                {stopped, receiving, scheduling, sweeping}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done - {stopped}:
                log.error("expiry worker part %s ended unexpectedly", task.get_name())
            stopped.cancel()
        finally:
            log.info("expiry worker stopping")
            for task in (scheduling, sweeping, summarising):
                task.cancel()
            await asyncio.gather(scheduling, sweeping, summarising, return_exceptions=True)
            await self._drain_sends()
            finish.set()
            try:
                await asyncio.wait_for(receiving, timeout=_DRAIN_SECONDS + 5)
            except (Exception, asyncio.CancelledError, TimeoutError):
                log.warning("expiry receiver did not stop cleanly", exc_info=True)
            await broker.shutdown()
            self._log_summary()
            log.info("expiry worker stopped")

    async def _schedule_forever(self) -> None:
        while True:
            try:
                await SchedulerLoop(self._queue.scheduler).run(
                    update_interval=_REFRESH, loop_interval=_TICK
                )
            except Exception:
                log.exception("expiry scheduler loop failed; restarting it")
                await asyncio.sleep(1)

    async def _drain_sends(self) -> None:
        """Let sends the scheduler already started reach the queue before we disconnect."""
        sends = [
            t for t in asyncio.all_tasks() if t.get_name().startswith(_SEND_PREFIX) and not t.done()
        ]
        if sends:
            await asyncio.wait(sends, timeout=_DRAIN_SECONDS)

    async def _reconcile_forever(self) -> None:
        # The second sweep, soon after start-up, catches tasks a killed worker had already
        # received and was holding until their deadline (at most MAX_EARLY_SECONDS ahead):
        # their schedules are gone and they were not overdue yet at our first sweep.
        pauses = itertools.chain([MAX_EARLY_SECONDS + 1], itertools.repeat(self._reconcile_every))
        while True:
            try:
                ended = await self.reconcile()
            except Exception as exc:
                log.warning("expiry reconciliation failed (%r); retrying later", exc)
            else:
                if ended:
                    log.info("reconciler ended %d overdue booking(s)", ended)
            await self._finish_shows_quietly()
            await self._sweep()
            await asyncio.sleep(min(next(pauses), self._reconcile_every))

    async def _finish_shows_quietly(self) -> None:
        try:
            moved = await self.finish_shows()
        except Exception as exc:
            log.warning("show lifecycle round failed (%r); retrying later", exc)
        else:
            if moved:
                log.info("show lifecycle moved %d booking(s) on", moved)

    async def _sweep(self) -> None:
        """Each sweep on its own: one failing (Stripe down) does not skip the others."""
        for sweep in self._sweeps:
            try:
                await sweep()
            except Exception as exc:
                name = getattr(sweep, "__qualname__", repr(sweep))
                log.warning("sweep %s after reconciliation failed (%r)", name, exc)

    async def _summarise_forever(self) -> None:
        while True:
            await asyncio.sleep(self._summary_every)
            self._log_summary()

    def _log_summary(self) -> None:
        line = self.window.summary()
        if line is not None:
            log.info("expiry summary: %s", line)
