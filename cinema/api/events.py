"""GET /api/screenings/{id}/events: the screening's seat changes as Server-Sent Events.

A StreamResponse of our own (aiohttp-sse would add a dependency, and its writes are a task per
viewer): after the headers, the hub writes each batch to every viewer's transport itself
(Connection below, cinema/live/viewer.py). Frames: `resync` (every
seat's status and the counts) on connect and whenever the stream cannot prove it missed
nothing; `held` / `released` / `sold` with `seat_ids` and `counts` (general admission:
`counts`, with no place ids); a `: ping` comment every SSE_HEARTBEAT_SECONDS.
`Last-Event-ID` on a reconnect replays what was missed."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import hdrs, web

from cinema.api.errors import ApiError
from cinema.api.io import Inputs, path_id
from cinema.api.keys import CATALOGUE, LIVE
from cinema.api.limits import LIMITS, client_ip
from cinema.booking.errors import ScreeningNotFound
from cinema.live.service import LiveUnavailable, TooManyStreams
from cinema.live.viewer import Batch, Viewer
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
# Bytes a viewer's connection may hold unsent in the kernel, and in this process before it
# counts as behind: a viewer behind by more than SSE_VIEWER_QUEUE frames past that is dropped.
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
    viewer.on_drop(transport.abort)  # a dropped viewer's unsent bytes go with it
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    LIVE_VIEWERS.inc()
    try:
        chunked = response.headers.get(hdrs.TRANSFER_ENCODING, "").lower() == "chunked"
        viewer.attach(Connection(transport, chunked))
        await viewer.closed()
    finally:
        LIVE_VIEWERS.dec()
        if viewer.overflowed:
            LIVE_VIEWERS_DROPPED.inc()
    return response


class Connection:
    """A viewer's outlet: the hub's flush writes each batch straight to the socket's transport
    (aiohttp's response.write is a coroutine, a task per viewer; the headers went out in
    prepare()). HTTP/1.1 gets the chunked coding aiohttp announced, done here once per batch
    for all viewers; HTTP/1.0 gets the bare bytes, ended by closing the connection."""

    __slots__ = ("_chunked", "_transport")

    def __init__(self, transport: asyncio.Transport, chunked: bool) -> None:
        self._transport = transport
        self._chunked = chunked

    def write(self, batch: Batch) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("the viewer went away")
        wire = batch.data
        if self._chunked:
            wire = batch.wire or b"%x\r\n%b\r\n" % (len(wire), wire)
            batch.wire = wire
        try:
            self._transport.write(wire)
        except RuntimeError as exc:  # uvloop: the transport closed under us
            raise ConnectionResetError(str(exc)) from exc

    def backed_up(self) -> bool:
        return self._transport.get_write_buffer_size() > WRITE_BUFFER_BYTES


def _bound_buffers(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WRITE_BUFFER_BYTES)
    transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
