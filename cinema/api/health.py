"""GET /health (the process answers) and GET /ready (its backing services answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from cinema.api import schemas as s
from cinema.api.io import Inputs, json_response
from cinema.api.routes import Route

Probe = Callable[[], Awaitable[None]]
PROBES = web.AppKey("probes", dict[str, Probe])


async def health(request: web.Request, given: Inputs[None, None]) -> web.Response:
    return json_response({"status": "ok"})


async def _passes(probe: Probe) -> bool:
    try:
        await asyncio.wait_for(probe(), timeout=2)
    except Exception:
        return False
    return True


async def ready(request: web.Request, given: Inputs[None, None]) -> web.Response:
    probes = request.app.get(PROBES, {})
    names = list(probes)
    results = await asyncio.gather(*(_passes(probes[n]) for n in names))
    checks = {n: ("ok" if ok else "unavailable") for n, ok in zip(names, results, strict=True)}
    if all(results):
        return json_response({"status": "ready", "checks": checks})
    down = [n for n, ok in zip(names, results, strict=True) if not ok]
    body = {
        "error": {
            "code": "not_ready",
            "message": f"unavailable: {', '.join(down)}",
            "checks": checks,
        }
    }
    return json_response(body, status=503)


HEALTH_ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", health, "The process answers", response=s.HealthOut),
    Route(
        "GET",
        "/ready",
        ready,
        "PostgreSQL and Redis answer (503 names the one that does not)",
        response=s.ReadyOut,
    ),
)
