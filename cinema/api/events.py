"""GET /api/screenings/{id}/events: the screening's seat changes as Server-Sent Events.

A StreamResponse of our own (aiohttp-sse would add a dependency for the ~30 lines below, and
we need the outbox and the drop in cinema/live/viewer.py anyway). Frames: `resync` (every
seat's status and the counts) on connect and whenever the stream cannot prove it missed
nothing; `held` / `released` / `sold` with `seat_ids` and `counts` (general admission:
`counts`, with no place ids); a `: ping` comment every SSE_HEARTBEAT_SECONDS.
`Last-Event-ID` on a reconnect replays what was missed."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from cinema.api.errors import ApiError
from cinema.api.io import Inputs, path_id
from cinema.api.keys import CATALOGUE, LIVE
from cinema.api.limits import LIMITS, client_ip
from cinema.booking.errors import ScreeningNotFound
from cinema.live.service import LiveUnavailable, TooManyStreams
from cinema.live.viewer import Viewer
from cinema.logs import REQUEST_ID
from cinema.metrics import LIVE_VIEWERS, LIVE_VIEWERS_DROPPED

STREAM_DESCRIPTION = (
    "A stream of Server-Sent Events, each `id: N` (increasing per screening), `event: NAME`,"
    " `data: JSON`. `resync`: `{screening_id, seats: [{id, status}], counts}`, the full status"
    " (AVAILABLE / LOCKED / SOLD) as of event N, sent on connect and whenever the stream cannot"
    " prove it missed nothing: replace your state with it. `held` / `released` / `sold`:"
    " `{screening_id, seat_ids, counts: {available, locked, sold}, at}` (`at`: unix time of"
    " the change): set those seats LOCKED / AVAILABLE / SOLD. A general-admission screening"
    " (`general_admission: true` in its resync, whose `seats` is empty) gets `counts`"
    " instead: `{screening_id, change: held|released|sold, quantity, counts, at}`. A comment"
    " line `: ping` every SSE_HEARTBEAT_SECONDS. Reconnect with `Last-Event-ID: N` (or"
    " `?last_event_id=N`) to get the events after N, or a resync if they are no longer"
    " buffered. 429 `too_many_streams` past SSE_MAX_PER_CLIENT streams per client address"
    " (over every API process); 503 `live_unavailable` (with Retry-After) while Redis is"
    " down: poll GET /api/screenings/{id}/seats/ instead."
)
RETRY_AFTER_SECONDS = 5
# Bytes a viewer's connection may hold unsent in this process and in the kernel: a viewer
# this far behind blocks its writer, its outbox fills, and it is dropped.
WRITE_BUFFER_BYTES = 64 * 1024
STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


def _last_event_id(request: web.Request) -> int | None:
    """The `Last-Event-ID` header, or `?last_event_id=`; anything unusable means "resync"."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id", "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


async def screening_events(request: web.Request, given: Inputs[None, None]) -> web.StreamResponse:
    screening_id = path_id(request)
    if await request.app[CATALOGUE].snapshot(screening_id) is None:
        raise ScreeningNotFound(screening_id)
    limits = request.app.get(LIMITS)
    client = client_ip(request, limits.trusted_proxies if limits else ())
    try:
        async with request.app[LIVE].watch(screening_id, client, _last_event_id(request)) as viewer:
            return await _stream(request, viewer)
    except TooManyStreams as exc:
        raise _refused(429, exc.code, exc.message) from None
    except LiveUnavailable:
        raise _refused(
            503, "live_unavailable", "live seat status is unavailable; poll the seat map"
        ) from None


def _refused(status: int, code: str, message: str) -> ApiError:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return ApiError(status, code, message, headers=headers, retry_after=RETRY_AFTER_SECONDS)


async def _stream(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    response = web.StreamResponse(headers=STREAM_HEADERS)
    request_id = REQUEST_ID.get()
    if request_id is not None:  # the access-log middleware adds it only after the stream ends
        response.headers["X-Request-ID"] = request_id
    transport = request.transport
    if transport is None:
        return response
    _bound_buffers(transport)
    viewer.on_drop(transport.abort)  # also wakes a writer blocked on a full socket
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    LIVE_VIEWERS.inc()
    try:
        while not viewer.dropped:
            ready = await viewer.take()
            if viewer.dropped:
                break
            await response.write(ready[0] if len(ready) == 1 else b"".join(ready))
    except (ConnectionError, RuntimeError):
        pass  # the viewer went away (RuntimeError: aiohttp's "cannot write to closing transport")
    finally:
        LIVE_VIEWERS.dec()
        if viewer.overflowed:
            LIVE_VIEWERS_DROPPED.inc()
    return response


def _bound_buffers(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WRITE_BUFFER_BYTES)
    transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
