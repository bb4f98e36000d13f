"""The composition root opens every resource of a role and closes every one of them again:
a process that restarts its app (tests, a supervisor reusing the interpreter) leaks nothing."""

from __future__ import annotations

import os

import pytest

from cinema.bootstrap import api_services, worker_loop
from tests.client import wait_for
from tests.conftest import make_settings


def open_sockets() -> int:
    """Sockets this process holds (Linux): PostgreSQL and Redis connections among them."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # closed while we looked
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts sockets through /proc")
@pytest.mark.parametrize("follow_ups", ["inprocess", "taskiq"])
async def test_each_role_closes_every_connection_it_opened(database_url, redis_prefix, follow_ups):
    settings = make_settings(database_url, redis_prefix, follow_ups=follow_ups)
    before = open_sockets()

    async def all_closed() -> bool:
        # A close can time out on a busy machine after the transport was told to close;
        # the socket is then gone a loop turn later. Never closed means it stays.
        return open_sockets() <= before

    for _ in range(3):
        async with api_services(settings) as api:
            assert await api.catalogue.movies(1, 0) is not None
            # The pools really are open: PostgreSQL's minimum and Redis's. The Redis warm-up
            # opens up to its pool size, but on a busy machine some of its pings time out.
            assert open_sockets() >= before + settings.db_pool_min + 1
        await wait_for(all_closed, within=5, what="the API's sockets to close")
        async with worker_loop(settings) as loop:
            assert await loop.reconcile() >= 0
        await wait_for(all_closed, within=5, what="the worker's sockets to close")


async def test_a_background_job_that_loses_its_first_cancellation_still_stops() -> None:
    """A cancellation can arrive as a TimeoutError from inside a client library; a loop that
    survives errors then carries on. Closing the context must end it all the same."""
    import asyncio
    import contextlib

    from cinema.bootstrap import _run_in_background

    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                rounds += 1
                if rounds == 1:
                    continue  # the first cancellation is lost
                raise

    async with contextlib.AsyncExitStack() as stack:
        _run_in_background(stack, stubborn(), "stubborn")
        await asyncio.sleep(0.05)
    assert rounds == 2
