"""Who hashes next: logins ahead of waiting sign-ups, sign-ups never starved, each kind in
arrival order, and a cancelled waiter never loses or leaks a turn."""

from __future__ import annotations

import asyncio

from cinema.auth.hash_turns import LOGINS_PER_SIGNUP, HashKind, HashTurns

LOGIN, SIGNUP = HashKind.LOGIN, HashKind.SIGNUP


async def _order(turns: HashTurns, arrivals: list[tuple[HashKind, str]]) -> list[str]:
    """One thread, held while `arrivals` queue up in order; the order in which they run."""
    ran: list[str] = []
    await turns.acquire(SIGNUP)  # the running hash

    async def one(kind: HashKind, name: str) -> None:
        await turns.acquire(kind)
        ran.append(name)
        turns.release()

    tasks = []
    for kind, name in arrivals:
        tasks.append(asyncio.create_task(one(kind, name)))
        await asyncio.sleep(0)  # queued in this order
    turns.release()
    await asyncio.gather(*tasks)
    return ran


async def test_a_login_goes_ahead_of_sign_ups_that_came_first() -> None:
    ran = await _order(HashTurns(1), [(SIGNUP, "s1"), (SIGNUP, "s2"), (LOGIN, "l1")])
    assert ran == ["l1", "s1", "s2"]


async def test_sign_ups_get_a_turn_however_many_logins_wait() -> None:
    arrivals = [(SIGNUP, "s1"), (SIGNUP, "s2")] + [(LOGIN, f"l{i}") for i in range(8)]
    ran = await _order(HashTurns(1), arrivals)
    assert ran[: LOGINS_PER_SIGNUP + 1] == ["l0", "l1", "l2", "s1"]
    assert ran.index("s2") == 2 * (LOGINS_PER_SIGNUP + 1) - 1
    assert [n for n in ran if n.startswith("l")] == [f"l{i}" for i in range(8)]


async def test_at_most_threads_run_and_a_cancelled_waiter_passes_its_turn_on() -> None:
    turns = HashTurns(2)
    await turns.acquire(LOGIN)
    await turns.acquire(SIGNUP)
    waiting = asyncio.create_task(turns.acquire(LOGIN))
    after = asyncio.create_task(turns.acquire(SIGNUP))
    await asyncio.sleep(0)
    assert not waiting.done() and not after.done()  # both threads busy
    waiting.cancel()
    turns.release()
    await asyncio.wait_for(after, 1)  # the cancelled login's turn went to the sign-up
    assert turns.waiting(LOGIN) == turns.waiting(SIGNUP) == 0
    turns.release()
    turns.release()
    await asyncio.wait_for(turns.acquire(LOGIN), 1)
    await asyncio.wait_for(turns.acquire(LOGIN), 1)
    third = asyncio.create_task(turns.acquire(LOGIN))
    await asyncio.sleep(0)
    assert not third.done()  # still two threads, no more
    third.cancel()
