"""Expiry metrics: how late bookings expire (deadline -> actual cancel), how the tasks fare.
The count of expired bookings is cinema_bookings_expired_total (cinema/metrics.py, through the
BookingEvents port); the histogram's _count gives it per path.

Prometheus objects for a scrape (`cinema worker` serves them on WORKER_METRICS_PORT), plus a
small window of recent latenesses that the worker summarises in its log."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from cinema.booking.model import Booking

TASK_RUNS = Counter(
    "cinema_expiry_tasks_total",
    "Expiry tasks run, by outcome: expired (it ended the booking) or noop (paid, already"
    " cancelled or not due), or failed.",
    ["outcome"],
)
SWEEPS = Counter(
    "cinema_expiry_reconciliations_total",
    "Completed reconciliation sweeps (one at start-up, one shortly after, then periodic).",
)
IN_FLIGHT = Gauge(
    "cinema_expiry_tasks_in_flight",
    "Expiry tasks received and not finished (most wait for their deadline, up to 1 s).",
)
SHOWS_FINISHED = Counter(
    "cinema_bookings_show_over_total",
    "Bookings the worker moved on after their screening: COMPLETED, NO_SHOW (it ended), or"
    " CANCELLED (still unpaid when it started).",
    ["status"],
)
LATENESS = Histogram(
    "cinema_booking_expiry_lateness_seconds",
    "Seconds from a booking's deadline (expires_at) to its cancellation by the worker, by"
    " path: task (the scheduled task) or reconciler (the catch-up sweep).",
    ["path"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 900, 3600),
)


def lateness_seconds(booking: Booking) -> float:
    """Both times come from PostgreSQL's clock: updated_at is the cancelling transaction's."""
    return (booking.updated_at - booking.expires_at).total_seconds()


@dataclass
class LatenessWindow:
    """Latenesses seen since the last summary, for the log line."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def record(self, path: str, booking: Booking) -> float:
        late = lateness_seconds(booking)
        LATENESS.labels(path).observe(max(late, 0.0))
        self.samples.setdefault(path, []).append(late)
        return late

    def summary(self) -> str | None:
        """One line per path: count, p50, p99, max; empties the window. None if empty."""
        if not self.samples:
            return None
        parts = []
        for path, values in sorted(self.samples.items()):
            parts.append(f"{path}: {len(values)} expired, lateness {describe(values)}")
        self.samples = {}
        return "; ".join(parts)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(pct) - 1]


def describe(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):.3f}s p99 {percentile(values, 99):.3f}s"
        f" max {max(values):.3f}s"
    )


FOLLOW_UP_RUNS = Counter(
    "cinema_follow_up_tasks_total",
    "Follow-up task attempts (task: send_ticket or cancel_payment), by outcome: done (it"
    " did the work), noop (nothing left to do), retry (failed, re-scheduled) or gave_up.",
    ["task", "outcome"],
)
