"""Whose password is hashed next when a hashing thread frees up: logins before sign-ups.

When a sale opens, people sign up and log in at the same moment, and every one of them costs
an argon2 run of tens of milliseconds on a core. In one first-come-first-served queue, the
buyer who already has an account and only wants in waits behind every sign-up that arrived
first (measured: a 50-user sign-up-then-login burst, login p50 1.7-2.5 s). Here a login goes
ahead of waiting sign-ups, so it waits for at most the hashes already running, while sign-ups
still get every `LOGINS_PER_SIGNUP + 1`-th turn when both wait: a flood of logins delays
sign-ups, never stops them. Within each kind the order is first come, first served, and a
freed turn is handed straight to the next waiter (nobody barges in, as in store/fair.py).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque

LOGINS_PER_SIGNUP = 3


class HashKind(enum.Enum):
    LOGIN = "login"  # verifying a password
    SIGNUP = "signup"  # hashing a new one (registration, a password set by staff)


class HashTurns:
    def __init__(self, threads: int) -> None:
        self._free = threads
        self._waiting: dict[HashKind, deque[asyncio.Future[None]]] = {
            kind: deque() for kind in HashKind
        }
        self._logins_in_a_row = 0

    def waiting(self, kind: HashKind) -> int:
        return sum(not turn.done() for turn in self._waiting[kind])

    async def acquire(self, kind: HashKind) -> None:
        if self._free > 0 and not any(self._waiting.values()):
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[kind].append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # given the turn just as we were cancelled: pass it on
            elif turn in self._waiting[kind]:
                self._waiting[kind].remove(turn)
            raise

    def release(self) -> None:
        """Hand the thread to the next waiter (see the module's docstring), or free it."""
        while (kind := self._next_kind()) is not None:
            turn = self._waiting[kind].popleft()
            if turn.done():  # cancelled while waiting
                continue
            self._logins_in_a_row = self._logins_in_a_row + 1 if kind is HashKind.LOGIN else 0
            turn.set_result(None)
            return
        self._free += 1

    def _next_kind(self) -> HashKind | None:
        logins, signups = self._waiting[HashKind.LOGIN], self._waiting[HashKind.SIGNUP]
        if logins and (not signups or self._logins_in_a_row < LOGINS_PER_SIGNUP):
            return HashKind.LOGIN
        if signups:
            return HashKind.SIGNUP
        return None
