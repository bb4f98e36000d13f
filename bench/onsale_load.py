"""The load generator processes of bench/onsale.py, one client coroutine per scenario:
hot (C clients at one seat), onsale (users booking seats that look free) and browse (seat-map
readers). They start together through one barrier and report statuses and latencies."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp
import orjson


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


async def _hot_child(spec: dict[str, Any], barrier: Any) -> dict[str, Any]:
    url, clients = spec["url"], spec["clients"]
    body = orjson.dumps({"screening_id": spec["screening_id"], "seat_ids": [spec["seat_id"]]})
    headers = [_auth(t) for t in spec["tokens"]]
    results: list[tuple[int, float, float]] = []
    async with _session(clients) as session:
        await _preconnect(session, url, clients)
        gate = asyncio.Event()

        async def client(h: dict[str, str]) -> None:
            await gate.wait()
            started = time.perf_counter()
            async with session.post(url + "/api/bookings/", data=body, headers=h) as resp:
                await resp.read()
                done = time.perf_counter()
                results.append((resp.status, (done - started) * 1000, done))

        tasks = [asyncio.create_task(client(headers[i % len(headers)])) for i in range(clients)]
        await asyncio.sleep(0)  # every client is parked on the gate
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        released = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
    return {
        "statuses": [r[0] for r in results],
        "latencies": [r[1] for r in results],
        "burst_ms": (max(r[2] for r in results) - released) * 1000 if results else 0.0,
    }


class FreeSeats:
    """The seats this process believes are free: O(1) remove and random pick."""

    def __init__(self, seat_ids: Iterable[int]) -> None:
        self.items = list(seat_ids)
        self.index = {s: i for i, s in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def remove(self, seat: int) -> None:
        i = self.index.pop(seat, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def pick(self, count: int) -> list[int]:
        return random.sample(self.items, min(count, len(self.items)))


async def _onsale_child(spec: dict[str, Any], barrier: Any) -> dict[str, Any]:
    url, screening_id, max_seats = spec["url"], spec["screening_id"], spec["max_seats"]
    free = FreeSeats(spec["seat_ids"])
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    booked: list[list[int]] = []
    codes: list[int] = []
    errors: list[str] = []
    async with _session(len(spec["tokens"])) as session:
        await _preconnect(session, url, len(spec["tokens"]))

        async def user(token: str) -> None:
            h = _auth(token)
            while free and len(errors) < 50:
                seats = free.pick(random.randint(1, max_seats))
                body = orjson.dumps({"screening_id": screening_id, "seat_ids": seats})
                started = time.perf_counter()
                async with session.post(url + "/api/bookings/", data=body, headers=h) as resp:
                    raw = await resp.read()
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses[resp.status] += 1
                    codes.append(resp.status)
                if resp.status == 201:
                    booked.append(seats)
                    for s in seats:
                        free.remove(s)
                elif resp.status == 409:
                    taken = orjson.loads(raw)["error"].get("seat_ids") or seats
                    for s in taken:
                        free.remove(s)
                else:
                    errors.append(f"{resp.status} {raw[:200]!r}")

        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        started = time.time()
        await asyncio.gather(*(user(t) for t in spec["tokens"]))
        ended = time.time()
    return {
        "statuses": dict(statuses),
        "latencies": latencies,
        "codes": codes,
        "booked": booked,
        "errors": errors[:5],
        "started": started,
        "ended": ended,
    }


async def _browse_child(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    url = f"{spec['url']}/api/screenings/{spec['screening_id']}/seats/"
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline_s = spec.get("seconds")
    async with _session(spec["readers"]) as session:
        await _preconnect(session, spec["url"], spec["readers"])
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        started = time.time()
        deadline = started + deadline_s if deadline_s else None

        async def reader() -> None:
            while not stop.is_set() and (deadline is None or time.time() < deadline):
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    latencies.append((time.perf_counter() - t0) * 1000)
                    statuses[resp.status] += 1

        await asyncio.gather(*(reader() for _ in range(spec["readers"])))
        ended = time.time()
    return {"statuses": dict(statuses), "latencies": latencies, "started": started, "ended": ended}


def _child_main(kind: str, spec: dict[str, Any], barrier: Any, stop: Any, out: Any) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    cpu0 = time.process_time()
    try:
        if kind == "hot":
            result = asyncio.run(_hot_child(spec, barrier))
        elif kind == "onsale":
            result = asyncio.run(_onsale_child(spec, barrier))
        else:
            result = asyncio.run(_browse_child(spec, barrier, stop))
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
