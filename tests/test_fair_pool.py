"""The pool serves the request that has waited longest first (cinema/store/fair.py): no
newcomer takes a connection in front of a waiter, and a cancelled waiter gives up its turn
without losing anyone's place. Against real PostgreSQL, plus the gate alone."""

import asyncio

import pytest

from cinema.store.fair import FifoGate
from cinema.store.pool import create_pool


async def test_waiters_get_connections_in_the_order_they_asked(database_url):
    pool = await create_pool(database_url, 2, 2)  # both open: none waits on a connect
    try:
        order: list[int] = []
        first_in = asyncio.Event()

        async def client(n: int) -> None:
            async with pool.acquire() as conn:
                order.append(n)
                first_in.set()
                await conn.fetchval("SELECT pg_sleep(0.002)")

        tasks = []
        for n in range(40):  # each starts asking only after the previous one has
            tasks.append(asyncio.create_task(client(n)))
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert order == list(range(40))
        assert pool.gate.waiting == 0
        assert pool.get_idle_size() == pool.get_size()
    finally:
        await pool.close()


async def test_a_newcomer_never_barges_past_a_woken_waiter():
    gate = FifoGate(1)
    await gate.acquire()
    got: list[str] = []

    async def take(name: str) -> None:
        await gate.acquire()
        got.append(name)

    waiter = asyncio.create_task(take("waiter"))
    await asyncio.sleep(0)  # the waiter is queued
    gate.release()  # its place is handed over; it has not run yet
    newcomer = asyncio.create_task(take("newcomer"))
    await asyncio.sleep(0)
    await asyncio.wait_for(waiter, 5)
    assert got == ["waiter"]
    assert not newcomer.done()
    gate.release()
    await asyncio.wait_for(newcomer, 5)
    assert got == ["waiter", "newcomer"]


@pytest.mark.parametrize("handed_over", [False, True])
async def test_a_cancelled_waiter_gives_its_turn_on(handed_over):
    gate = FifoGate(1)
    await gate.acquire()
    cancelled = asyncio.create_task(gate.acquire())
    behind = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    if handed_over:
        gate.release()  # the place goes to `cancelled`, which is cancelled before it runs
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    if not handed_over:
        gate.release()
    await asyncio.wait_for(behind, 5)
    assert gate.waiting == 0
    gate.release()
    await asyncio.wait_for(gate.acquire(), 5)  # the one place is free again, not lost or doubled
    assert gate.waiting == 0 and gate._free == 0
