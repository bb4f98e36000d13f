"""Ticket emails and Stripe intent cancels run as Taskiq tasks in a real `cinema worker`
process (FOLLOW_UPS=taskiq): the API only queues them. Against localstripe and a real SMTP
server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from cinema.booking.errors import PaymentProviderUnavailable
from cinema.settings import Settings
from tasks.follow_ups import FollowUpTasks, retry_delay
from tasks.queue import TaskQueue
from tests.client import ApiClient, wait_for
from tests.conftest import JWT_SECRET, REDIS_URL
from tests.payment_fixtures import (
    CARD_OK,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
    PayApi,
    PayApiFactory,
    SmtpSink,
    booking_of,
    deliver,
    free_port,
    paid_event,
    wait_status,
)
from tests.workerproc import WorkerProcess, worker_env

RUNS = "cinema_follow_up_tasks_total"


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    # A sub-prefix per test: its own seat keys, Taskiq queue and schedules.
    return f"{redis_prefix}fu{secrets.token_hex(3)}:"


@pytest.fixture
def start_worker(
    database_url: str, prefix: str, localstripe_url: str, smtp: SmtpSink
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(sink: SmtpSink = smtp, **settings: Any) -> WorkerProcess:
        values: dict[str, Any] = {
            "expiry_reconcile_seconds": 3600,  # the sweeps run at start-up and 3 s later
            "hold_ttl_seconds": 900,
            "follow_ups": "taskiq",
            "stripe_secret_key": STRIPE_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": localstripe_url,
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            **settings,
        }
        worker = WorkerProcess(worker_env(database_url, REDIS_URL, JWT_SECRET, prefix, **values))
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.kill()
        print(f"--- worker log ({worker.env['REDIS_KEY_PREFIX']}) ---\n{worker.output()}")
        worker.close()


@pytest.fixture
async def fu_api(make_pay_api: PayApiFactory, stripe_fake: LocalStripe, prefix: str) -> PayApi:
    """An API whose follow-ups go to the worker, receiving localstripe's webhooks."""
    # A generous Redis timeout: on a loaded machine a 0.5 s connect can lapse, and the task then
    # (rightly) runs in this process instead of the worker these tests watch. The fallback has
    # tests of its own.
    api = await make_pay_api(
        redis_key_prefix=prefix, follow_ups="taskiq", redis_timeout_seconds=5.0
    )
    await stripe_fake.send_webhooks_to(api.webhook_url)
    return api


async def _book(api: ApiClient, token: str) -> dict[str, Any]:
    screening = await api.new_screening()
    reply = await api.book(token, screening.id, screening.seat_ids[:1])
    assert reply.status == 201, reply
    body: dict[str, Any] = reply.body
    return body


async def _confirm_by_webhook(api: ApiClient, booking: dict[str, Any]) -> None:
    body, header = paid_event(booking)
    reply = await deliver(api, body, header)
    assert reply.status == 200, reply


def _runs(worker: WorkerProcess, task: str, outcome: str) -> float:
    return worker.metric(RUNS, task=task, outcome=outcome)


def test_settings_choose_the_worker_when_expiry_uses_taskiq() -> None:
    base: dict[str, Any] = {"database_url": "postgresql://x/y", "jwt_secret": JWT_SECRET}
    assert Settings(_env_file=None, **base).follow_ups_mode == "taskiq"  # type: ignore[call-arg]
    off = Settings(_env_file=None, expiry_scheduler="off", **base)  # type: ignore[call-arg]
    assert off.follow_ups_mode == "inprocess"
    chosen = Settings(_env_file=None, follow_ups="inprocess", **base)  # type: ignore[call-arg]
    assert chosen.follow_ups_mode == "inprocess"


def test_retry_delays_grow_and_are_bounded() -> None:
    assert [retry_delay(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def test_a_paid_booking_gets_its_ticket_from_the_worker(
    fu_api: PayApi, stripe_fake: LocalStripe, smtp: SmtpSink, users: Any, start_worker: Any
) -> None:
    worker = start_worker()
    api = fu_api.client
    token = await users.one()
    booking = await _book(api, token)
    assert await stripe_fake.pay(booking["payment"]["payment_intent_id"], CARD_OK) == "succeeded"
    await wait_status(api, token, booking["id"], "CONFIRMED")
    await smtp.wait_for(booking["reference"])

    async def counted() -> bool:
        return _runs(worker, "send_ticket", "done") == 1

    # The worker sent it (the API process only queued the task).
    await wait_for(counted)
    assert len(smtp.for_reference(booking["reference"])) == 1


async def test_ten_concurrent_duplicate_webhooks_send_one_email(
    make_pay_api: PayApiFactory,
    stripe_fake: LocalStripe,
    smtp: SmtpSink,
    users: Any,
    start_worker: Any,
    prefix: str,
) -> None:
    await stripe_fake.send_webhooks_to(f"http://127.0.0.1:{free_port()}/nowhere")
    api = (await make_pay_api(redis_key_prefix=prefix, follow_ups="taskiq")).client
    worker = start_worker()
    token = await users.one()
    booking = await _book(api, token)
    body, header = paid_event(booking)
    replies = await asyncio.gather(*(deliver(api, body, header) for _ in range(10)))
    assert sorted(r.status for r in replies) == [200] * 10
    assert sorted(r.body["outcome"] for r in replies).count("duplicate") == 9

    # And ten more copies of the task itself, at once: the lease in PostgreSQL keeps them
    # from sending it again.
    queue = TaskQueue(REDIS_URL, prefix)
    try:
        tasks = FollowUpTasks(queue)
        await asyncio.gather(*(tasks.kick_send_ticket(booking["id"]) for _ in range(10)))
    finally:
        await queue.close()

    async def all_ran() -> bool:
        return _runs(worker, "send_ticket", "done") + _runs(worker, "send_ticket", "noop") == 11

    await wait_for(all_ran)
    assert _runs(worker, "send_ticket", "done") == 1
    assert len(smtp.for_reference(booking["reference"])) == 1


async def test_a_refusing_smtp_server_gets_the_ticket_once_after_retries(
    make_pay_api: PayApiFactory,
    stripe_fake: LocalStripe,
    users: Any,
    start_worker: Any,
    prefix: str,
) -> None:
    await stripe_fake.send_webhooks_to(f"http://127.0.0.1:{free_port()}/nowhere")
    sink = SmtpSink(refuse_first=2)
    sink.start()
    try:
        api = (await make_pay_api(redis_key_prefix=prefix, follow_ups="taskiq")).client
        token = await users.one()
        booking = await _book(api, token)
        sink.refuse_only(booking["reference"])
        worker = start_worker(sink)
        await _confirm_by_webhook(api, booking)
        await sink.wait_for(booking["reference"], within=30)
        assert sink.refused == 2
        assert _runs(worker, "send_ticket", "retry") == 2

        async def done() -> bool:
            return _runs(worker, "send_ticket", "done") == 1

        await wait_for(done)
        assert len(sink.for_reference(booking["reference"])) == 1
        assert "retrying in" in worker.output()
    finally:
        sink.stop()


async def test_a_user_cancel_has_the_worker_cancel_the_intent(
    fu_api: PayApi, stripe_fake: LocalStripe, users: Any, start_worker: Any
) -> None:
    worker = start_worker()
    api = fu_api.client
    token = await users.one()
    booking = await _book(api, token)
    intent_id = booking["payment"]["payment_intent_id"]
    cancelled = await api.delete(f"/api/bookings/{booking['id']}/", token=token)
    assert cancelled.status == 200, cancelled

    async def cancelled_at_stripe() -> bool:
        return str((await stripe_fake.intent(intent_id)).status) == "canceled"

    await wait_for(cancelled_at_stripe)

    async def by_the_worker() -> bool:
        return _runs(worker, "cancel_payment", "done") == 1

    await wait_for(by_the_worker)

    async def recorded() -> bool:
        return (await booking_of(api, token, booking["id"]))["payment"]["status"] == "canceled"

    await wait_for(recorded)


async def test_a_restarted_worker_sends_the_ticket_a_killed_one_did_not(
    fu_api: PayApi, smtp: SmtpSink, users: Any, start_worker: Any, rds: aioredis.Redis, prefix: str
) -> None:
    start_worker().kill()  # SIGKILL: nothing runs the queue now
    api = fu_api.client
    token = await users.one()
    booking = await _book(api, token)
    await _confirm_by_webhook(api, booking)
    assert (await booking_of(api, token, booking["id"]))["status"] == "CONFIRMED"
    # The task waits in Redis, not in the API process.
    queued = await rds.lrange(f"{prefix}taskiq:expiry", 0, -1)
    assert any(b"cinema.send_ticket" in m for m in queued)
    assert smtp.for_reference(booking["reference"]) == []

    worker = start_worker()
    await smtp.wait_for(booking["reference"])

    async def done() -> bool:
        return _runs(worker, "send_ticket", "done") == 1

    await wait_for(done)  # by the queued task (the sweep leaves fresh bookings to it)
    assert len(smtp.for_reference(booking["reference"])) == 1


async def test_the_sweep_sends_a_ticket_whose_sender_died_mid_send(
    fu_api: PayApi,
    smtp: SmtpSink,
    users: Any,
    start_worker: Any,
    rds: aioredis.Redis,
    prefix: str,
    database_url: str,
) -> None:
    api = fu_api.client
    token = await users.one()
    booking = await _book(api, token)
    await _confirm_by_webhook(api, booking)
    # Ten minutes ago a sender took the lease and died (its lease has lapsed), and its task
    # is gone: drop the task once it is queued, so none arrives after the delete.
    queue_key = f"{prefix}taskiq:expiry"

    async def queued() -> bool:
        return any(b"cinema.send_ticket" in m for m in await rds.lrange(queue_key, 0, -1))

    await wait_for(queued)
    await rds.delete(queue_key)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE bookings SET tickets_claimed_until = now() - interval '1 second',"
            " updated_at = now() - interval '10 minutes' WHERE id = $1",
            booking["id"],
        )
    finally:
        await conn.close()

    worker = start_worker()
    await smtp.wait_for(booking["reference"])
    # The worker logs each send and then the sweep's total, after the SMTP server has the mail.
    # Other tests' bookings in this database may be stale too, so the total may be more than 1.
    sweep_total = re.compile(r"ticket sweep sent [1-9]\d* email\(s\)")

    async def swept() -> bool:
        return sweep_total.search(worker.output()) is not None

    await wait_for(swept, what="the sweep's log line")
    assert f"ticket email for booking {booking['id']} sent" in worker.output()
    assert len(smtp.for_reference(booking["reference"])) == 1
    assert _runs(worker, "send_ticket", "done") == 0  # no task did it: the sweep did


async def test_queue_unreachable_falls_back_to_in_process(
    make_pay_api: PayApiFactory,
    stripe_fake: LocalStripe,
    smtp: SmtpSink,
    users: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await stripe_fake.send_webhooks_to(f"http://127.0.0.1:{free_port()}/nowhere")
    api = (
        await make_pay_api(
            follow_ups="taskiq", taskiq_redis_url=f"redis://127.0.0.1:{free_port()}/0"
        )
    ).client
    token = await users.one()
    booking = await _book(api, token)
    await _confirm_by_webhook(api, booking)
    await smtp.wait_for(booking["reference"])
    assert len(smtp.for_reference(booking["reference"])) == 1
    assert f"could not queue send_ticket for booking {booking['id']}" in caplog.text


async def test_a_failed_attempt_is_rescheduled_then_given_up(
    rds: aioredis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The retry lives in Redis as a timed schedule; past the bound, or for an error that
    will not go away, the task gives up with an error line and schedules nothing."""
    calls: list[int] = []

    async def failing(booking_id: int) -> bool:
        calls.append(booking_id)
        raise ConnectionRefusedError("SMTP down")

    async def refused(booking_id: int) -> bool:
        raise PaymentProviderUnavailable("no such intent", retryable=False)

    queue = TaskQueue(REDIS_URL, prefix)
    try:
        tasks = FollowUpTasks(queue, attempts=3)
        tasks.serve(send_ticket=failing, cancel_payment=refused)
        data = f"{prefix}taskiq:schedule:data:"

        await tasks.send_ticket_task.original_func(7, 1)
        assert await rds.exists(f"{data}send_ticket-7-2") == 1
        await tasks.send_ticket_task.original_func(7, 3)
        assert await rds.exists(f"{data}send_ticket-7-4") == 0
        assert "send_ticket for booking 7 gave up after 3 attempt(s)" in caplog.text

        await tasks.cancel_payment_task.original_func(8, 1)
        assert await rds.exists(f"{data}cancel_payment-8-2") == 0
        assert "cancel_payment for booking 8 gave up after 1 attempt(s)" in caplog.text
        assert calls == [7, 7]
    finally:
        await queue.close()
