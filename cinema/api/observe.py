"""Per request: an X-Request-ID (the client's, if sane, or a new one) returned on the response,
one JSON access-log line, and the request count and latency metrics. Also GET /metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from aiohttp import web

from cinema import metrics
from cinema.api.errors import Handler, error_response
from cinema.logs import REQUEST_ID

log = logging.getLogger("cinema.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Request key set by authentication, read by the access log (aiohttp < 3.13 has no RequestKey).
USER_ID: Any = web.RequestKey("user_id", int) if hasattr(web, "RequestKey") else "user_id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex


def route_label(request: web.Request) -> str:
    """The route template ("/api/bookings/{id}/"), never the raw path: bounded label values."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = _request_id(request)
    token = REQUEST_ID.set(request_id)
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects and the like pass through as exceptions
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away, or shutdown cancelled the request
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(500, "internal_error", "internal server error")
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = route_label(request)
        metrics.observe_request(request.method, route, status, elapsed)
        log.info(
            "%s %s %d %.1fms",
            request.method,
            request.path,
            status,
            elapsed * 1000,
            extra={
                "event": "request",
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "user_id": request.get(USER_ID),
                "remote": request.remote,
            },
        )
        REQUEST_ID.reset(token)


async def metrics_endpoint(request: web.Request) -> web.Response:
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response
