"""The live stream's bytes on the wire, now that the hub's flush writes each batch straight to
every viewer's transport (cinema/api/events.py's Connection): HTTP/1.1 chunks framed by hand
(each a whole number of frames), HTTP/1.0 bare frames ended by closing, a viewer that hangs
up dropped at the next heartbeat. Real server on loopback, real Redis; each ends with the
viewer's seats equal to PostgreSQL's. The unit tests at the end pin the back-pressure rule."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import redis.asyncio as aioredis
from aiohttp import web

from cinema.api.events import WRITE_BUFFER_BYTES, Connection
from cinema.api.keys import LIVE
from cinema.app import init_app
from cinema.live.hub import ScreeningHub
from cinema.live.viewer import Batch, Viewer
from tests.client import ApiClient, wait_for
from tests.conftest import AppFactory, Users, make_settings
from tests.sse import STATUS_OF, open_stream
from tests.test_live_slow import BURST, burst, publisher


class RawViewer:
    """A viewer on a bare socket, so the test sees exactly the bytes the server wrote."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.headers: dict[str, str] = {}
        self.seats: dict[int, str] = {}
        self.ids: list[int] = []

    def apply(self, frame: bytes) -> None:
        fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if line[:1] != b":")
        if b"id" not in fields:
            return  # retry: or a ping
        self.ids.append(int(fields[b"id"]))
        data = orjson.loads(fields[b"data"])
        name = fields[b"event"].decode()
        if name == "resync":
            self.seats = {s["id"]: s["status"] for s in data["seats"]}
        else:
            self.seats.update(dict.fromkeys(data["seat_ids"], STATUS_OF[name]))

    async def chunk(self, within: float = 10) -> bytes:
        """One HTTP/1.1 chunk, parsed strictly; b"" for the last one or a closed connection."""
        size_line = await asyncio.wait_for(self.reader.readline(), within)
        if not size_line:
            return b""
        assert size_line.endswith(b"\r\n"), size_line
        size = int(size_line, 16)
        data = await self.reader.readexactly(size + 2)
        assert data.endswith(b"\r\n"), data[-20:]
        return data[:-2]

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def raw_viewer(api: ApiClient, screening_id: int, version: str) -> AsyncIterator[RawViewer]:
    host, port = api.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    path = f"/api/screenings/{screening_id}/events"
    writer.write(f"GET {path} HTTP/{version}\r\nHost: {host}\r\n\r\n".encode())
    viewer = RawViewer(reader, writer)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head.decode().split("\r\n")
    assert status.split(" ")[1] == "200", head
    viewer.headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines if line)}
    try:
        yield viewer
    finally:
        viewer.close()


async def test_each_http11_chunk_holds_whole_frames_and_a_burst_arrives_in_order(
    make_api: AppFactory, database_url: str, redis_prefix: str, rds: aioredis.Redis
) -> None:
    app = init_app(make_settings(database_url, redis_prefix, sse_reconcile_seconds=3600))
    api = await make_api(app)
    screening = await api.new_screening()
    async with raw_viewer(api, screening.id, "1.1") as viewer:
        assert viewer.headers["transfer-encoding"] == "chunked"
        assert viewer.headers["content-type"].startswith("text/event-stream")
        first = await viewer.chunk()  # what waited for the headers: retry and resync, one chunk
        assert first.startswith(b"retry: ") and b"event: resync" in first
        for frame in first.split(b"\n\n")[:-1]:
            viewer.apply(frame)
        start = viewer.ids[0]
        async with publisher(rds, redis_prefix) as sink:
            await burst(sink, screening.id, screening.seat_ids[0])
        chunks = 0
        while len(viewer.ids) < 1 + BURST:
            data = await viewer.chunk()
            assert data.endswith(b"\n\n"), data[-40:]  # a chunk never splits a frame
            chunks += 1
            for frame in data.split(b"\n\n")[:-1]:
                viewer.apply(frame)
        assert chunks < BURST  # batched: changes share writes
        assert viewer.ids == list(range(start, start + BURST + 1))
        assert viewer.seats == await api.seat_statuses(screening.id)  # PostgreSQL


async def test_an_http10_viewer_gets_bare_frames_until_the_stream_is_dropped(
    make_api: AppFactory, database_url: str, redis_prefix: str, users: Users
) -> None:
    app = init_app(make_settings(database_url, redis_prefix, sse_reconcile_seconds=3600))
    api = await make_api(app)
    screening = await api.new_screening()
    [buyer] = await users.create(1)
    async with raw_viewer(api, screening.id, "1.0") as viewer:
        assert "transfer-encoding" not in viewer.headers
        assert "content-length" not in viewer.headers

        async def frame() -> bytes:
            return (await asyncio.wait_for(viewer.reader.readuntil(b"\n\n"), 10))[:-2]

        assert (await frame()).startswith(b"retry: ")
        viewer.apply(await frame())
        assert set(viewer.seats.values()) == {"AVAILABLE"}
        booked = await api.book(buyer, screening.id, screening.seat_ids[:2])
        assert booked.status == 201, booked
        while viewer.seats[screening.seat_ids[0]] != "LOCKED":
            raw = await frame()
            assert raw.startswith((b"id: ", b":")), raw  # no chunk sizes in between
            viewer.apply(raw)
        assert viewer.seats == await api.seat_statuses(screening.id)  # PostgreSQL
        app[LIVE].drop_all()
        rest = await asyncio.wait_for(viewer.reader.read(), 10)  # the end of the body: EOF
        assert b"\r\n" not in rest, rest
    await wait_for(_viewers(app, screening.id, 0), within=10, what="the viewer's removal")


def _viewers(app: web.Application, screening_id: int, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(app[LIVE].backlogs(screening_id)) == n

    return check


async def test_a_viewer_that_hangs_up_is_dropped_at_the_next_heartbeat(
    make_api: AppFactory, database_url: str, redis_prefix: str, users: Users
) -> None:
    settings = make_settings(
        database_url, redis_prefix, sse_reconcile_seconds=3600, sse_heartbeat_seconds=0.2
    )
    app = init_app(settings)
    api = await make_api(app)
    screening = await api.new_screening()
    stays = await open_stream(api.session, api.base_url, screening.id)
    await stays.until(lambda s: bool(s.seats), what="the first resync")
    async with raw_viewer(api, screening.id, "1.1") as leaver:
        await leaver.chunk()
        await wait_for(_viewers(app, screening.id, 2), within=10, what="2 viewers")
    await wait_for(_viewers(app, screening.id, 1), within=10, what="the hang-up noticed")
    [buyer] = await users.create(1)
    booked = await api.book(buyer, screening.id, screening.seat_ids[3:5])
    assert booked.status == 201, booked
    truth = await api.seat_statuses(screening.id)  # PostgreSQL
    await stays.until(lambda s: s.seats == truth, within=5, what="the hold at the one left")
    stays.close()


# --- the outlet and the back-pressure rule, without a server ---------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = self.closing = True


def _attached(limit: int = 4) -> tuple[Viewer, FakeTransport]:
    transport = FakeTransport()
    viewer = Viewer("client", limit, on_drop=transport.abort)
    viewer.attach(Connection(transport, chunked=True))  # type: ignore[arg-type]
    return viewer, transport


def test_what_waited_for_the_headers_goes_out_as_one_chunk() -> None:
    transport = FakeTransport()
    viewer = Viewer("client", 4)
    viewer.send(b"retry: 1\n\n")
    viewer.send(b"id: 1\nevent: resync\ndata: {}\n\n")
    assert transport.written == [] and viewer.queued == 2
    viewer.attach(Connection(transport, chunked=True))  # type: ignore[arg-type]
    body = b"retry: 1\n\nid: 1\nevent: resync\ndata: {}\n\n"
    assert transport.written == [b"%x\r\n%b\r\n" % (len(body), body)]
    assert viewer.queued == 0
    plain = FakeTransport()
    other = Viewer("client", 4)
    other.send(b"retry: 1\n\n")
    other.attach(Connection(plain, chunked=False))  # type: ignore[arg-type]
    assert plain.written == [b"retry: 1\n\n"]


def test_a_batch_is_framed_once_for_every_viewer() -> None:
    (one, first), (two, second) = _attached(), _attached()
    batch = Batch(b"id: 2\nevent: held\ndata: {}\n\n", 1)
    one.deliver(batch)
    two.deliver(batch)
    assert first.written == [b"1c\r\nid: 2\nevent: held\ndata: {}\n\n\r\n"]
    assert first.written[0] is second.written[0] is batch.wire


def test_a_backed_up_viewer_waits_in_its_outbox_and_is_dropped_past_its_limit() -> None:
    viewer, transport = _attached(limit=4)
    transport.buffered = WRITE_BUFFER_BYTES + 1  # the kernel's buffer and ours are full
    assert viewer.deliver(Batch(b"a\n\n" * 3, 3))  # behind: kept by reference, not copied
    assert viewer.deliver(Batch(b"b\n\n", 1))
    assert viewer.queued == 4 and transport.written == [] and not viewer.dropped
    assert viewer.catch_up()  # still full: still behind
    transport.buffered = 0  # the peer caught up
    assert not viewer.catch_up()
    assert transport.written == [b"c\r\na\n\na\n\na\n\nb\n\n\r\n"] and viewer.queued == 0
    transport.buffered = WRITE_BUFFER_BYTES + 1
    viewer.deliver(Batch(b"x\n\n" * 9, 9))  # one batch alone, however long, is not too much
    assert not viewer.dropped
    viewer.deliver(Batch(b"x\n\n", 1))
    assert viewer.dropped and viewer.overflowed and transport.aborted and viewer.queued == 0
    assert len(transport.written) == 1  # nothing more for a dropped viewer


def test_the_hub_sends_what_waited_before_the_next_batch() -> None:
    hub = ScreeningHub(1, replay_size=8)
    viewer, transport = _attached()
    hub.viewers.add(viewer)
    transport.buffered = WRITE_BUFFER_BYTES + 1
    hub.broadcast(b"1\n\n")
    hub.flush()
    assert hub.behind == {viewer} and transport.written == []
    transport.buffered = 0
    hub.broadcast(b"2\n\n")
    hub.flush()
    assert transport.written == [b"3\r\n1\n\n\r\n", b"3\r\n2\n\n\r\n"]
    assert hub.behind == set()
    transport.buffered = WRITE_BUFFER_BYTES + 1
    hub.broadcast(b"3\n\n")
    hub.flush()
    transport.buffered = 0
    hub.flush()  # nothing new: the viewer catches up all the same
    assert transport.written[-1] == b"3\r\n3\n\n\r\n" and hub.behind == set()


def test_a_write_to_a_closed_connection_drops_the_viewer() -> None:
    viewer, transport = _attached()
    transport.closing = True
    viewer.deliver(Batch(b"x\n\n", 1))
    assert viewer.dropped and not viewer.overflowed and transport.written == []
