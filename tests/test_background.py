"""In-process follow-up jobs: retried with backoff, given up on refusals, drained on close."""

import asyncio
import time

from cinema.background import Background
from cinema.booking.errors import PaymentProviderUnavailable


async def _until(predicate, within=5.0):
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_failing_job_is_retried_until_it_succeeds():
    background = Background(attempts=5, first_delay=0.01)
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")

    background.spawn("flaky", flaky)
    await _until(lambda: background.pending == 0)
    assert len(calls) == 3


async def test_a_refusal_is_not_retried_and_attempts_are_bounded():
    background = Background(attempts=3, first_delay=0.01)
    refused, broken = [], []

    async def refuse():
        refused.append(1)
        raise PaymentProviderUnavailable("no", retryable=False)

    async def always_broken():
        broken.append(1)
        raise ConnectionError("down")

    background.spawn("refused", refuse)
    background.spawn("broken", always_broken)
    await _until(lambda: background.pending == 0)
    assert (len(refused), len(broken)) == (1, 3)


async def test_close_waits_for_jobs_in_flight_and_drops_waiting_retries():
    background = Background(attempts=5, first_delay=60)
    finished = []

    async def slow():
        await asyncio.sleep(0.05)
        finished.append(1)

    async def failing():
        raise ConnectionError("down")

    background.spawn("slow", slow)
    background.spawn("failing", failing)
    await asyncio.sleep(0)
    started = time.monotonic()
    await background.close(grace_seconds=5)
    assert finished == [1]
    assert background.pending == 0
    assert time.monotonic() - started < 2  # the 60 s retry wait was not waited for
