"""argon2id at OWASP's parameters, on a bounded pool; older hashes verify and are upgraded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from cinema.auth.passwords import (
    MEMORY_COST_KIB,
    PARALLELISM,
    TIME_COST,
    PasswordHashing,
    return_hash_memory,
)
from cinema.store.pool import Pool
from tests.client import ApiClient

_OLD = PasswordHasher()  # argon2-cffi's defaults: m=65536, t=3, p=4 (what earlier builds stored)


def _parameters(encoded: str) -> str:
    return encoded.split("$")[3]


async def test_new_hashes_use_owasp_argon2id_parameters() -> None:
    hashing = PasswordHashing(threads=1)
    try:
        encoded = await hashing.hash("a long enough password")
    finally:
        hashing.close()
    assert encoded.startswith("$argon2id$")
    assert _parameters(encoded) == f"m={MEMORY_COST_KIB},t={TIME_COST},p={PARALLELISM}"


async def test_at_most_the_configured_number_of_hashes_run_at_once() -> None:
    hashing = PasswordHashing(threads=2)
    seen: set[str] = set()

    async def one() -> None:
        await hashing.hash("pw")
        seen.update(t.name for t in threading.enumerate() if t.name.startswith("argon2"))

    try:
        await asyncio.gather(*(one() for _ in range(12)))
    finally:
        hashing.close()
    assert 1 <= len(seen) <= 2, seen


async def test_a_hash_with_older_parameters_verifies_and_is_upgraded_on_login(
    api: ApiClient, pool: Pool
) -> None:
    email = "old-params@example.com"
    password = "correct horse battery"
    await pool.execute(
        "INSERT INTO users (email, password_hash) VALUES ($1, $2)", email, _OLD.hash(password)
    )
    reply = await api.post("/api/auth/token", {"email": email, "password": password})
    assert reply.status == 200, reply
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE email = $1", email)
    assert _parameters(stored) == f"m={MEMORY_COST_KIB},t={TIME_COST},p={PARALLELISM}"
    assert PasswordHasher().verify(stored, password)
    again = await api.post("/api/auth/token", {"email": email, "password": password})
    assert again.status == 200, again


async def test_a_wrong_password_leaves_an_old_hash_alone(api: ApiClient, pool: Pool) -> None:
    email = "old-params-wrong@example.com"
    old_hash = _OLD.hash("the right one")
    await pool.execute("INSERT INTO users (email, password_hash) VALUES ($1, $2)", email, old_hash)
    reply = await api.post("/api/auth/token", {"email": email, "password": "not the right one"})
    assert reply.status == 401, reply
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE email = $1", email)
    assert stored == old_hash


async def test_a_garbled_stored_hash_is_a_failed_login_not_an_error() -> None:
    hashing = PasswordHashing(threads=1)
    try:
        verified = await hashing.verify("$argon2id$garbage", "pw")
    finally:
        hashing.close()
    assert not verified.ok


_RSS_AFTER_HASHES = """
import asyncio
from cinema.auth.passwords import PasswordHashing

def rss_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")

async def main() -> None:
    hashing = PasswordHashing(threads=2)
    stored = await hashing.hash("a long enough password")
    before = rss_kib()
    await asyncio.gather(*(hashing.verify(stored, "a long enough password") for _ in range(12)))
    print(rss_kib() - before)
    hashing.close()

asyncio.run(main())
"""


def test_the_memory_of_finished_hashes_goes_back_to_the_system() -> None:
    """glibc would keep each hashing thread's 19 MiB resident after its hash (an API process
    grew by ~38 MiB for good after a few logins on 2 threads); return_hash_memory() stops it."""
    if not Path("/proc/self/status").exists() or not return_hash_memory():
        pytest.skip("needs Linux with glibc")
    done = subprocess.run(
        [sys.executable, "-c", _RSS_AFTER_HASHES], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown_kib = int(done.stdout.strip())
    assert grown_kib < MEMORY_COST_KIB // 2, f"resident memory grew by {grown_kib} KiB"


async def test_hashing_threads_run_at_the_configured_niceness() -> None:
    """Linux schedules threads one by one: a burst of logins yields to the event loops."""
    hashing = PasswordHashing(threads=1, nice=7)
    try:
        await hashing.hash("a long enough password")  # the thread exists and was set up
        loop = asyncio.get_running_loop()
        niceness = await loop.run_in_executor(
            hashing._pool,  # the hashing thread itself
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
        )
    finally:
        hashing.close()
    loops = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # unchanged
    assert niceness == min(19, loops + 7), (niceness, loops)
