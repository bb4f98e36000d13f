"""The load generator processes of bench/onsale.py: each runs one scenario's client coroutine
(bench/scenarios/), all start together through one barrier and report statuses and latencies."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=60),
        skip_auto_headers=("User-Agent",),
    )


async def _preconnect(session: aiohttp.ClientSession, url: str, count: int) -> None:
    async def one() -> None:
        async with session.get(url + "/health") as resp:
            await resp.read()

    await asyncio.gather(*(one() for _ in range(count)))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _child_main(kind: str, spec: dict[str, Any], barrier: Any, stop: Any, out: Any) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    cpu0 = time.process_time()
    try:
        from bench.scenarios import clients

        result = asyncio.run(clients()[kind](spec, barrier, stop))
        result["cpu_s"] = time.process_time() - cpu0
        out.put((kind, result))
    except BaseException as exc:
        barrier.abort()
        out.put((kind, {"crash": repr(exc)}))


def run_children(
    jobs: list[tuple[str, dict[str, Any]]],
    stop_after: set[str] | None = None,
    on_start: Callable[[], None] | None = None,
) -> Any:
    """Run each (kind, spec) in its own process; all start together through one barrier,
    once every process has opened its connections, and `on_start` runs at that moment (so
    CPU meters see the load, not the connecting). Kinds in `stop_after` must finish before
    the others are told to stop (browse readers run until the onsale is over). Returns a
    list of (kind, result)."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(jobs) + 1)
    stop = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_child_main, args=(kind, spec, barrier, stop, out))
        for kind, spec in jobs
    ]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=600)
    except threading.BrokenBarrierError:
        pass  # a child failed before the start; its report says why
    else:
        if on_start is not None:
            on_start()
    results: list[tuple[str, dict[str, Any]]] = []
    waiting_for = sum(1 for kind, _ in jobs if stop_after is None or kind in stop_after)
    while len(results) < len(jobs):
        kind, result = out.get(timeout=600)
        results.append((kind, result))
        if "crash" in result:
            stop.set()
        if stop_after is None or kind in stop_after:
            waiting_for -= 1
            if waiting_for == 0:
                stop.set()
    for proc in procs:
        proc.join(timeout=30)
    crashed = [r["crash"] for _, r in results if "crash" in r]
    if crashed:
        raise RuntimeError(f"a load process failed: {crashed[0]}")
    return results


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    return [list(items[i::parts]) for i in range(parts) if items[i::parts]]
