"""Opt-in per-stage timings of a request (STAGE_TIMINGS=1), for finding where a winner's time
goes under load (docs/performance.md, "Where a winner's time goes").

When on, the composition root wraps the booking service's collaborators (seat filter, store,
catalogue, expiry, payments, events) and the raw PostgreSQL pool in `instrument` proxies, the
route table laps its steps (JWT, rate limit, body validation, handler) and `stages_middleware`
collects each request's stages and observes them in one Prometheus histogram,
`cinema_stage_seconds{route, status, stage}`, when the request ends: so a winner's (201) stages
are kept apart from a loser's (409). Off (the default) nothing is wrapped and no middleware is
added; the route table's laps cost one context-variable read per request.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from aiohttp import web
from prometheus_client import Histogram

T = TypeVar("T")
Lap = Callable[[str], None]
_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_BUCKETS = tuple(ms / 1000 for ms in _MS)

STAGE_SECONDS = Histogram(
    "cinema_stage_seconds",
    "Time spent in one stage of a request (STAGE_TIMINGS=1 only), by route template, final"
    " status and stage",
    ["route", "status", "stage"],
    buckets=_BUCKETS,
)

_STAGES: ContextVar[list[tuple[str, float]] | None] = ContextVar("stages", default=None)


def record(stage: str, seconds: float) -> None:
    """Add one stage's duration to the request being served (nothing outside a request)."""
    found = _STAGES.get()
    if found is not None:
        found.append((stage, seconds))


def lap_timer() -> Lap | None:
    """None when timings are off; otherwise `lap(name)` records the time since the previous
    lap (or since this call) as stage `name`."""
    if _STAGES.get() is None:
        return None
    last = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal last
        now = time.perf_counter()
        record(stage, now - last)
        last = now

    return lap


def _timed_coroutine(stage: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            record(stage, time.perf_counter() - started)

    return timed


def _timed_call(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record(stage, time.perf_counter() - started)

    return timed


class _Instrumented:
    """Every public method of the target, timed as stage `prefix.method`; the rest as is."""

    def __init__(self, target: Any, prefix: str) -> None:
        self._target = target
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_") or not callable(value):
            return value
        stage = f"{self._prefix}.{name}"
        if inspect.iscoroutinefunction(value):
            wrapped = _timed_coroutine(stage, value)
        else:
            wrapped = _timed_call(stage, value)
        setattr(self, name, wrapped)  # once per method, not once per call
        return wrapped


def instrument(target: T, prefix: str) -> T:
    """`target` with each public method timed (see the module doc); typed as the target."""
    return cast(T, _Instrumented(target, prefix))


class _TimedAcquire:
    """asyncpg's pool with `acquire()` awaited and timed as stage `pool.acquire` (asyncpg's
    own acquire returns an awaitable context, which `instrument` would not time)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    async def acquire(self) -> Any:
        started = time.perf_counter()
        try:
            return await self._raw.acquire()
        finally:
            record("pool.acquire", time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def timed_pool(raw: Any) -> Any:
    return _TimedAcquire(raw)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


@web.middleware
async def stages_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: collects the request's stages, then observes them with the final status
    (plus `server.total`, the time from here to the response being ready)."""
    stages: list[tuple[str, float]] = []
    token = _STAGES.set(stages)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        stages.append(("server.total", time.perf_counter() - started))
        _STAGES.reset(token)
        route, code = _route(request), str(status)
        for stage, seconds in stages:
            STAGE_SECONDS.labels(route, code, stage).observe(seconds)
