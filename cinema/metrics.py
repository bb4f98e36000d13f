"""Prometheus metrics (prometheus-client). With PROMETHEUS_MULTIPROC_DIR set (as `cinema serve`
does for several processes) every process writes its values to files in that folder and a
scrape of any one process reports the sum over all of them."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from cinema.booking.model import Booking, PaymentEvent
from cinema.booking.ports import ConflictSource
from cinema.logs import REQUEST_ID

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "cinema_http_requests_total",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "cinema_http_request_duration_seconds",
    "Time from request received to response written, by route template and status",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BOOKINGS_CREATED = Counter("cinema_bookings_created_total", "Bookings created (PENDING)")
BOOKINGS_CONFLICTED = Counter(
    "cinema_bookings_conflicted_total",
    "Booking attempts refused because a seat was taken, by where it was caught",
    ["caught_by"],
)
BOOKINGS_CONFIRMED = Counter("cinema_bookings_confirmed_total", "Bookings confirmed (paid)")
BOOKINGS_CANCELLED = Counter(
    "cinema_bookings_cancelled_total", "Bookings cancelled, by reason", ["reason"]
)
PAYMENT_MISMATCHES = Counter(
    "cinema_payment_mismatches_total",
    "Payment successes refused (refunded) because they paid another amount or currency than"
    " the booking's, by what differed",
    ["mismatch"],
)
BOOKINGS_EXPIRED = Counter("cinema_bookings_expired_total", "PENDING bookings expired unpaid")
REDIS_FALLBACKS = Counter(
    "cinema_redis_fallbacks_total",
    "Bookings decided by PostgreSQL alone because the Redis seat filter did not answer",
)
RATE_LIMITED = Counter(
    "cinema_rate_limited_total", "Requests refused with 429, by limit", ["limit"]
)
RATE_LIMIT_FAILURES = Counter(
    "cinema_rate_limit_failures_total",
    "Rate-limit checks that could not reach Redis and let the request through",
)
DB_POOL_CONNECTIONS = Gauge(
    "cinema_db_pool_connections",
    "PostgreSQL pool connections, by state (in_use, idle, max), summed over live processes",
    ["state"],
    multiprocess_mode="livesum",
)

for _source in ("redis", "postgres"):
    BOOKINGS_CONFLICTED.labels(_source)
for _mismatch in ("amount", "currency", "missing"):
    PAYMENT_MISMATCHES.labels(_mismatch)

log = logging.getLogger("cinema.bookings")


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    code = str(status)
    HTTP_REQUESTS.labels(method, route, code).inc()
    HTTP_LATENCY.labels(method, route, code).observe(seconds)


def observe_pool(size: int, idle: int, max_size: int) -> None:
    DB_POOL_CONNECTIONS.labels("in_use").set(size - idle)
    DB_POOL_CONNECTIONS.labels("idle").set(idle)
    DB_POOL_CONNECTIONS.labels("max").set(max_size)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type; the sum over processes in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges (called by the process that started it)."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _booking_fields(booking: Booking) -> dict[str, object]:
    fields: dict[str, object] = {
        "booking_id": booking.id,
        "reference": booking.reference,
        "user_id": booking.user_id,
        "screening_id": booking.screening_id,
        "seat_ids": list(booking.seat_ids),
    }
    request_id = REQUEST_ID.get()  # the request that caused the change, if one did
    if request_id is not None:
        fields["request_id"] = request_id
    return fields


class BookingTelemetry:
    """The BookingEvents port for production: a counter per event and a JSON log line per
    state change of a booking (the line carries the request id when a request caused it)."""

    def created(self, booking: Booking) -> None:
        BOOKINGS_CREATED.inc()
        log.info(
            "booking created",
            extra={"event": "booking_state", "status": "PENDING", **_booking_fields(booking)},
        )

    def conflicted(self, caught_by: ConflictSource, seat_ids: Sequence[int]) -> None:
        BOOKINGS_CONFLICTED.labels(caught_by).inc()

    def redis_fallback(self) -> None:
        REDIS_FALLBACKS.inc()

    def confirmed(self, booking: Booking) -> None:
        BOOKINGS_CONFIRMED.inc()
        log.info(
            "booking confirmed",
            extra={"event": "booking_state", "status": "CONFIRMED", **_booking_fields(booking)},
        )

    def cancelled(self, booking: Booking, reason: str | None) -> None:
        BOOKINGS_CANCELLED.labels(reason or "unknown").inc()
        log.info(
            "booking cancelled",
            extra={
                "event": "booking_state",
                "status": "CANCELLED",
                "reason": reason,
                **_booking_fields(booking),
            },
        )

    def expired(self, booking: Booking) -> None:
        BOOKINGS_EXPIRED.inc()
        log.info(
            "booking expired",
            extra={
                "event": "booking_state",
                "status": "CANCELLED",
                "reason": "expired",
                **_booking_fields(booking),
            },
        )

    def payment_mismatched(self, booking: Booking, event: PaymentEvent) -> None:
        PAYMENT_MISMATCHES.labels(_mismatch_of(booking, event)).inc()


def _mismatch_of(booking: Booking, event: PaymentEvent) -> str:
    if event.amount is None or event.currency is None:
        return "missing"
    return "currency" if event.currency.upper() != booking.currency.upper() else "amount"


# Live seat status (cinema/live/, GET /api/screenings/{id}/events).
LIVE_VIEWERS = Gauge(
    "cinema_live_viewers",
    "Open live seat-status streams, summed over live processes",
    multiprocess_mode="livesum",
)
LIVE_VIEWERS_DROPPED = Counter(
    "cinema_live_viewers_dropped_total",
    "Live streams closed because the viewer did not keep up (its outbox was full)",
)
LIVE_CHANGES_DROPPED = Counter(
    "cinema_live_changes_dropped_total",
    "Seat changes never published (queue full or Redis unreachable); viewers resync",
)
