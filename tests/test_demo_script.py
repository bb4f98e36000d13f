"""scripts/demo.sh started in the background by a non-interactive shell (which starts it with
SIGINT ignored) stops with everything it started on SIGINT as on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import BASE_DATABASE_URL, JWT_SECRET, REDIS_URL, RUN_ID
from tests.payment_fixtures import free_port
from tests.processes import wait_until

ROOT = Path(__file__).resolve().parent.parent


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def _drop(database_url: str) -> None:
    base, _, name = database_url.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_backgrounded_demo_stops_on_int_and_term(tmp_path, signum):
    base, _, _ = BASE_DATABASE_URL.rpartition("/")
    database_url = f"{base}/cinema_test_{RUN_ID}_demo_{signum.name.lower()}"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": f"cinematest:{RUN_ID}:demo{int(signum)}:",
        "JWT_SECRET": JWT_SECRET,
        "EXPIRY_RECONCILE_SECONDS": "3600",
    }
    log = tmp_path / "demo.log"
    # `cmd &` in a non-interactive bash: the job starts with SIGINT ignored, as in the bug.
    wrapper = subprocess.Popen(
        ["bash", "-c", f"./scripts/demo.sh --port {port} >{log} 2>&1 & echo $!; wait"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so the finally below can clean up the whole group
    )
    try:
        assert wrapper.stdout is not None
        demo = int(wrapper.stdout.readline())
        wait_until(lambda: _healthy(port), 90, what="the demo answers /health (see its log below)")
        started = _descendants(demo)
        assert len(started) >= 2, started  # the worker and the API at least
        os.kill(demo, signum)
        wait_until(lambda: not _alive(demo), 30, what=f"demo.sh exits on {signum.name}")
        wait_until(
            lambda: not any(_alive(p) for p in started),
            20,
            what=f"everything demo.sh started exits: {[p for p in started if _alive(p)]}",
        )
        assert wrapper.wait(timeout=10) == 0
        assert not _healthy(port)
    except AssertionError:
        print(log.read_text() if log.exists() else "no demo log")
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(wrapper.pid, signal.SIGKILL)
        wrapper.wait(timeout=10)
        asyncio.run(_drop(database_url))
