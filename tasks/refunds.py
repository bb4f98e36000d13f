"""The screening-cancellation task: `cinema.cancel_screening` ends every booking of a
cancelled screening (cinema/refunds/screenings.py). The API kicks it; `cinema worker` runs
it. Losing it loses nothing: the worker's sweep over cancelled screenings that still have
live bookings does the same work, and after a crash the next run carries on where the
last one stopped (the state is PostgreSQL's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tasks.queue import TaskQueue

CANCEL_SCREENING_TASK = "cinema.cancel_screening"

Run = Callable[[int], Awaitable[object]]


class ScreeningTasks:
    def __init__(self, queue: TaskQueue) -> None:
        self._run: Run | None = None

        async def cancel_screening(screening_id: int) -> None:
            if self._run is None:
                raise RuntimeError("this process does not run screening cancellations")
            await self._run(screening_id)

        self.cancel_task = queue.broker.register_task(
            cancel_screening, task_name=CANCEL_SCREENING_TASK
        )

    def serve(self, run: Run) -> None:
        """Make this process (the worker) run the task."""
        self._run = run

    async def kick(self, screening_id: int) -> None:
        await self.cancel_task.kiq(screening_id)
