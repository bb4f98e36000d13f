"""Live seat status across real `cinema serve` processes: a change made through one process
reaches the viewers of another through Redis pub/sub (each process subscribes on its own), and
the viewers end equal to the seat map read from PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import ApiClient
from tests.conftest import Users
from tests.processes import ServerProcess
from tests.sse import open_stream

QUIET = {"SSE_RECONCILE_SECONDS": "3600"}  # the events themselves, not the reconciler's fixes


@pytest.fixture
def two_servers(
    tmp_path: Path, database_url: str, redis_prefix: str
) -> Iterator[list[ServerProcess]]:
    servers = [ServerProcess(tmp_path, database_url, redis_prefix, **QUIET) for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.close()


def _clients(api: ApiClient, servers: list[ServerProcess]) -> list[ApiClient]:
    return [ApiClient(s.url, api.session, api.staff_token) for s in servers]


async def test_a_hold_through_process_a_reaches_a_viewer_of_process_b_within_a_second(
    api: ApiClient, users: Users, two_servers: list[ServerProcess]
) -> None:
    one, two = _clients(api, two_servers)
    screening = await one.new_screening()
    viewer = await open_stream(two.session, two.base_url, screening.id)
    await viewer.until(lambda s: bool(s.seats), what="the first resync")
    buyer, other = await users.create(2)
    seats = screening.seat_ids[:2]

    booked = await one.book(buyer, screening.id, seats)
    answered = time.time()
    assert booked.status == 201, booked
    await viewer.until(
        lambda s: all(s.seats[x] == "LOCKED" for x in seats), within=5, what="the hold"
    )
    held = viewer.events[-1]
    assert held.name == "held" and held.data["seat_ids"] == seats
    assert held.received - answered < 1.0, held.received - answered

    # And the other way round, while both processes have viewers.
    back = await open_stream(one.session, one.base_url, screening.id)
    await back.until(lambda s: bool(s.seats), what="the first resync on A")
    assert (await two.book(other, screening.id, [screening.seat_ids[5]])).status == 201
    for stream in (viewer, back):
        await stream.until(lambda s: s.counts.get("locked") == 3, within=5, what="3 holds")
        assert stream.seats == await api.seat_statuses(screening.id)  # PostgreSQL
        stream.close()


async def test_general_admission_counts_reach_viewers_of_both_processes(
    api: ApiClient, users: Users, two_servers: list[ServerProcess]
) -> None:
    one, two = _clients(api, two_servers)
    screening_id = await one.new_ga_screening(20)
    viewers = [await open_stream(c.session, c.base_url, screening_id) for c in (one, two)]
    for stream in viewers:
        await stream.until(lambda s: bool(s.counts), what="the first resync")
        assert stream.events[0].data["general_admission"] is True
        assert stream.counts == {"available": 20, "locked": 0, "sold": 0}
    buyers = await users.create(2)
    booked = await asyncio.gather(
        one.book_places(buyers[0], screening_id, 3), two.book_places(buyers[1], screening_id, 2)
    )
    assert [b.status for b in booked] == [201, 201], booked
    cancelled = await one.delete(f"/api/bookings/{booked[1].body['id']}/", token=buyers[1])
    assert cancelled.status == 200, cancelled
    truth = await api.place_counts(screening_id)  # PostgreSQL
    assert truth == {"available": 17, "locked": 3, "sold": 0}
    for stream in viewers:
        await stream.until(
            lambda s: s.events[-1].data.get("change") == "released", within=5, what="release"
        )
        assert stream.counts == truth
        names = {e.name for e in stream.events[1:]}
        assert names == {"counts"}, names
        assert {e.data["change"] for e in stream.events[1:]} == {"held", "released"}
        assert all("seat_ids" not in e.data for e in stream.events)  # places stay private
        stream.close()
