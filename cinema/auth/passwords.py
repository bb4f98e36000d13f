"""Password hashing with argon2id on a small, bounded thread pool.

argon2 is slow and memory-hard on purpose: each hash or verify holds `memory_cost` KiB for its
whole run. On asyncio's default executor (cores + 4 threads) a burst of logins at an onsale ran
six at once, which multiplied the memory and starved the event loop's own threads. Here at most
`threads` run at once; the rest wait their turn, logins ahead of sign-ups
(cinema/auth/hash_turns.py), each kind first come, first served.

Parameters: OWASP's Password Storage Cheat Sheet (argon2id, "m=19456 (19 MiB), t=2, p=1" is its
first listed configuration; the others trade memory for iterations at equal cost). One hash
takes a few tens of milliseconds on a server core. Stored hashes carry their own parameters, so
hashes made with other ones (argon2-cffi's default m=64 MiB, t=3, p=4, used before) still
verify, and are replaced with one at today's parameters on the next successful login.

Memory: glibc's malloc raises its mmap threshold each time a large block is freed, so from
the second hash on, a thread's 19 MiB comes from its heap arena and stays resident after the
hash (measured: an API process at 97 MB after one hash held 136 MB after 20 verifies on 2
threads, for good). A fixed threshold below one hash (`return_hash_memory()`) makes every
hash's block a mapping of its own, given back to the system when the hash ends (the same 20
verifies: 78 MB after, 117 MB at the peak with 2 hashes running).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from cinema.auth.hash_turns import HashKind, HashTurns

TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1
# Blocks of at least this size are mapped and unmapped on their own (glibc's M_MMAP_THRESHOLD,
# fixed: no longer raised by each free). Below one hash's memory, above ordinary buffers.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h

log = logging.getLogger(__name__)

_hasher = PasswordHasher(
    time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM, type=Type.ID
)
# Verified when the email is unknown, so a login takes as long whether or not it exists.
_DUMMY_HASH = _hasher.hash("cinemacore-timing-equalizer")


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


@dataclass(frozen=True, slots=True)
class Verified:
    ok: bool
    new_hash: str | None = None  # set when the stored hash used outdated parameters


def _verify(password_hash: str | None, password: str) -> Verified:
    try:
        matched = _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return Verified(False)
    if not matched or password_hash is None:
        return Verified(False)
    if _hasher.check_needs_rehash(password_hash):
        return Verified(True, _hasher.hash(password))
    return Verified(True)


def return_hash_memory() -> bool:
    """Make malloc give each hash's memory back to the system when the hash ends (see the
    module's docstring). glibc only: elsewhere (musl, macOS) nothing changes, and False."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        log.info("no glibc mallopt here: argon2's memory is left to the C library")
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def _lower_priority(nice: int) -> None:
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:  # not Linux's per-thread niceness: hashes run at normal priority
        log.info("argon2 threads keep their priority (%s)", exc)


class PasswordHashing:
    """Hashes and verifies passwords off the event loop, at most `threads` at a time."""

    def __init__(self, threads: int, nice: int = 0) -> None:
        """`nice`: the hashing threads' niceness (Linux schedules threads one by one), so a
        burst of logins takes the CPU the event loops leave, not the CPU bookings need."""
        return_hash_memory()
        self._pool = ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix="argon2",
            initializer=_lower_priority,
            initargs=(nice,),
        )
        self._turns = HashTurns(threads)  # logins before sign-ups: cinema/auth/hash_turns.py

    async def hash(self, password: str) -> str:
        await self._turns.acquire(HashKind.SIGNUP)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, hash_password_sync, password
            )
        finally:
            self._turns.release()

    async def verify(self, password_hash: str | None, password: str) -> Verified:
        """`password_hash` None (unknown account) costs as much as a real check, and fails."""
        await self._turns.acquire(HashKind.LOGIN)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, _verify, password_hash, password
            )
        finally:
            self._turns.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
