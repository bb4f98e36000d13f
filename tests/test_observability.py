"""Request ids, JSON log lines, /metrics and /ready, against a real server."""

import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from cinema.app import init_app
from cinema.logs import JsonFormatter
from tests.conftest import make_settings
from tests.proxy import CuttableProxy


def samples(text):
    """{(name, frozenset(labels)): value} from a /metrics page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


async def scrape(api):
    reply = await api.get("/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    return samples(reply.body)


def value(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())), 0.0)


async def test_request_id_is_returned_generated_or_echoed(api):
    generated = await api.get("/health")
    assert len(generated.headers["X-Request-ID"]) == 32
    echoed = await api.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    # errors carry it too; an unusable one (spaces, too long) is replaced, not echoed
    missing = await api.get("/api/nope", headers={"X-Request-ID": "has spaces"})
    assert missing.status == 404
    assert missing.headers["X-Request-ID"] != "has spaces"
    assert len(missing.headers["X-Request-ID"]) == 32


async def test_one_json_line_per_request_and_per_booking_change(api, users, caplog):
    token = await users.one()
    screening = await api.new_screening()
    formatter = JsonFormatter()
    with caplog.at_level(logging.INFO):
        caplog.clear()
        reply = await api.book(token, screening.id, [screening.seat_ids[0]])
        assert reply.status == 201
        cancel = await api.delete(
            f"/api/bookings/{reply.body['id']}/", token=token, headers={"X-Request-ID": "rq-7"}
        )
        assert cancel.status == 200
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    requests = [ln for ln in lines if ln.get("event") == "request"]
    assert [(ln["method"], ln["route"], ln["status"]) for ln in requests] == [
        ("POST", "/api/bookings/", 201),
        ("DELETE", r"/api/bookings/{id}/", 200),
    ]
    post, delete = requests
    assert post["request_id"] == reply.headers["X-Request-ID"]
    assert delete["request_id"] == "rq-7"
    assert post["user_id"] == delete["user_id"] and isinstance(post["user_id"], int)
    assert post["duration_ms"] > 0
    changes = [ln for ln in lines if ln.get("event") == "booking_state"]
    assert [(c["status"], c["booking_id"]) for c in changes] == [
        ("PENDING", reply.body["id"]),
        ("CANCELLED", reply.body["id"]),
    ]
    assert changes[0]["request_id"] == post["request_id"]  # the change names its request
    assert changes[1]["reason"] == "cancelled_by_user"


async def test_metrics_count_requests_and_booking_outcomes(api, users):
    a, b = await users.create(2)
    screening = await api.new_screening()
    seat = screening.seat_ids[0]
    before = await scrape(api)
    assert (await api.book(a, screening.id, [seat])).status == 201
    assert (await api.book(b, screening.id, [seat])).status == 409
    after = await scrape(api)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cinema_bookings_created_total") == 1
    assert delta("cinema_bookings_conflicted_total", caught_by="redis") == 1
    assert delta("cinema_bookings_conflicted_total", caught_by="postgres") == 0
    labels = {"method": "POST", "route": "/api/bookings/"}
    assert delta("cinema_http_requests_total", status="201", **labels) == 1
    assert delta("cinema_http_requests_total", status="409", **labels) == 1
    assert delta("cinema_http_request_duration_seconds_count", status="409", **labels) == 1
    assert value(after, "cinema_db_pool_connections", state="max") >= 1
    for name in (
        "cinema_bookings_confirmed_total",
        "cinema_bookings_expired_total",
        "cinema_redis_fallbacks_total",
    ):
        assert (name, frozenset()) in after, name


async def test_postgres_conflicts_and_redis_fallbacks_are_counted(make_api, users):
    # Redis unreachable: PostgreSQL alone decides, and says so in the metrics
    api = await make_api(redis_url="redis://127.0.0.1:1/0")
    a, b = await users.create(2)
    screening = await api.new_screening()
    before = await scrape(api)
    assert (await api.book(a, screening.id, [screening.seat_ids[0]])).status == 201
    assert (await api.book(b, screening.id, [screening.seat_ids[0]])).status == 409
    after = await scrape(api)
    assert (
        value(after, "cinema_redis_fallbacks_total") - value(before, "cinema_redis_fallbacks_total")
        == 2
    )
    key = ("cinema_bookings_conflicted_total", frozenset({("caught_by", "postgres")}))
    assert after[key] - before.get(key, 0) == 1


async def test_ready_names_redis_when_it_is_down(make_api):
    reply = await make_api(redis_url="redis://127.0.0.1:1/0")
    ready = await reply.get("/ready")
    assert ready.status == 503, ready
    assert ready.body["error"]["code"] == "not_ready"
    assert ready.body["error"]["checks"] == {"postgres": "ok", "redis": "unavailable"}
    assert "redis" in ready.body["error"]["message"]
    assert (await reply.get("/health")).status == 200  # alive, just not ready


async def test_ready_names_postgres_when_it_goes_down(make_api, database_url, redis_prefix):
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)  # the machine's server, or an embedded one on any port
    proxy = await CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    try:
        netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
        url = urlunsplit(parts._replace(netloc=netloc))
        assert url != database_url
        api = await make_api(app=init_app(make_settings(url, redis_prefix)))
        ok = await api.get("/ready")
        assert ok.status == 200 and ok.body == {
            "status": "ready",
            "checks": {"postgres": "ok", "redis": "ok"},
        }
        await proxy.cut()
        down = await api.get("/ready")
        assert down.status == 503, down
        assert down.body["error"]["checks"] == {"postgres": "unavailable", "redis": "ok"}
        assert down.body["error"]["message"] == "unavailable: postgres"
    finally:
        await proxy.cut()


def test_settings_reject_a_bad_trusted_proxy(database_url, redis_prefix):
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        make_settings(database_url, redis_prefix, trusted_proxies="10.0.0.0/8, not-an-ip")
    assert make_settings(database_url, redis_prefix, trusted_proxies=" 10.0.0.0/8,::1 ")


def test_confirmed_and_expired_have_counters_and_log_lines(caplog):
    from datetime import UTC, datetime

    from prometheus_client import REGISTRY

    from cinema.booking.model import Booking, BookingStatus
    from cinema.metrics import BookingTelemetry

    now = datetime.now(UTC)
    booking = Booking(
        id=7,
        reference="ABC123",
        user_id=3,
        screening_id=5,
        status=BookingStatus.CONFIRMED,
        seat_ids=(11, 12),
        amount=2000,
        currency="usd",
        expires_at=now,
        hold_token="t",
        idempotency_key=None,
        cancel_reason=None,
        created_at=now,
        updated_at=now,
    )

    def count(name):
        return REGISTRY.get_sample_value(name) or 0.0

    before = count("cinema_bookings_confirmed_total"), count("cinema_bookings_expired_total")
    with caplog.at_level(logging.INFO, logger="cinema.bookings"):
        BookingTelemetry().confirmed(booking)
        BookingTelemetry().expired(booking)
    after = count("cinema_bookings_confirmed_total"), count("cinema_bookings_expired_total")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert [(ln["status"], ln.get("reason"), ln["seat_ids"]) for ln in lines] == [
        ("CONFIRMED", None, [11, 12]),
        ("CANCELLED", "expired", [11, 12]),
    ]
    assert all("request_id" not in ln for ln in lines)  # not caused by a request
