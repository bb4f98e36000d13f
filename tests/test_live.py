"""Live seat status over Server-Sent Events (GET /api/screenings/{id}/events), end to end:
real servers on loopback sharing the real Redis and PostgreSQL; every test ends with the
viewer's reconstructed seats equal to the seat map read from PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiohttp
import pytest

from cinema import live_redis
from tests.client import ApiClient, wait_for
from tests.conftest import AppFactory, Users
from tests.faultkit import RedisServer
from tests.sse import Stream, open_stream

# The reconciler corrects drift from PostgreSQL; the tests below check the events themselves.
QUIET = {"sse_reconcile_seconds": 3600}


async def _stream(api: ApiClient, screening_id: int, last: int | None = None) -> Stream:
    stream = await open_stream(api.session, api.base_url, screening_id, last)
    await stream.until(lambda s: bool(s.seats), what="the first resync")
    assert stream.events[0].name == "resync"
    return stream


async def _matches_postgres(api: ApiClient, stream: Stream, screening_id: int) -> None:
    """The viewer's state ends equal to the seat map (read from PostgreSQL on every call)."""
    truth = await api.seat_statuses(screening_id)

    def same(s: Stream) -> bool:
        return s.seats == truth

    await stream.until(same, within=5, what="the viewer's seats to equal the seat map")
    counts = {"available": 0, "locked": 0, "sold": 0}
    for status in truth.values():
        counts[status.lower()] += 1
    assert stream.counts == counts


async def test_a_viewer_sees_another_buyers_hold_within_a_second(
    make_api: AppFactory, users: Users
) -> None:
    api = await make_api(**QUIET)
    screening = await api.new_screening()
    stream = await _stream(api, screening.id)
    assert set(stream.seats.values()) == {"AVAILABLE"}
    assert stream.counts == {"available": 10, "locked": 0, "sold": 0}
    [buyer] = await users.create(1)
    seats = screening.seat_ids[2:4]

    booked = await api.book(buyer, screening.id, seats)
    answered = time.time()
    assert booked.status == 201, booked
    await stream.until(
        lambda s: all(s.seats[x] == "LOCKED" for x in seats), within=1.0, what="the hold"
    )
    held = stream.events[-1]
    assert held.name == "held" and held.data["seat_ids"] == seats
    assert held.data["counts"] == {"available": 8, "locked": 2, "sold": 0}
    assert held.received - answered < 1.0

    cancelled = await api.delete(f"/api/bookings/{booked.body['id']}/", token=buyer)
    assert cancelled.status == 200, cancelled
    await stream.until(lambda s: s.events[-1].name == "released", within=1.0, what="release")
    ids = [e.id for e in stream.events]
    assert ids == sorted(ids) and len(set(ids[1:])) == len(ids) - 1  # increasing per screening
    await _matches_postgres(api, stream, screening.id)
    stream.close()


async def test_a_booking_on_one_server_reaches_a_viewer_of_another(
    make_api: AppFactory, users: Users
) -> None:
    one, two = await make_api(**QUIET), await make_api(**QUIET)
    screening = await one.new_screening()
    viewers = [await _stream(one, screening.id), await _stream(two, screening.id)]
    buyers = await users.create(3)
    results = await asyncio.gather(
        *(
            api.book(token, screening.id, [seat])
            for api, token, seat in zip((one, two, one), buyers, screening.seat_ids, strict=False)
        )
    )
    assert [r.status for r in results] == [201, 201, 201], results
    for stream in viewers:
        await stream.until(lambda s: s.counts.get("locked") == 3, within=1.0, what="3 holds")
        await _matches_postgres(two, stream, screening.id)
        stream.close()


async def test_unknown_screening_is_404_json(api: ApiClient) -> None:
    reply = await api.get("/api/screenings/987654321/events")
    assert reply.status == 404, reply
    assert reply.body["error"]["code"] == "screening_not_found"
    assert reply.headers["Content-Type"].startswith("application/json")


async def test_streams_per_client_address_are_capped_over_every_process(
    make_api: AppFactory,
) -> None:
    capped = {"sse_max_per_client": 2, "trusted_proxies": "127.0.0.1", **QUIET}
    one, two = await make_api(**capped), await make_api(**capped)
    screening = await one.new_screening()
    address = f"203.0.113.{secrets.randbelow(250) + 1}"  # this test's own client address
    forwarded = {"X-Forwarded-For": address}

    async def open_one(api: ApiClient) -> Stream:
        stream = await open_stream(api.session, api.base_url, screening.id, headers=forwarded)
        await stream.until(lambda s: bool(s.seats), what="the first resync")
        return stream

    open_ones = [await open_one(one), await open_one(two)]
    for api in (one, two):
        refused = await api.get(f"/api/screenings/{screening.id}/events", headers=forwarded)
        assert refused.status == 429, refused
        assert refused.body["error"]["code"] == "too_many_streams"
        assert refused.headers["Content-Type"].startswith("application/json")
        assert int(refused.headers["Retry-After"]) >= 1
    other = await open_stream(one.session, one.base_url, screening.id)  # another address
    other.close()
    open_ones.pop().close()  # a closed stream frees its place, on the other process too

    async def admitted() -> bool:
        url = f"{one.base_url}/api/screenings/{screening.id}/events"
        reply = await one.session.get(url, headers=forwarded)
        ok = reply.status == 200
        reply.close()
        return ok

    await wait_for(admitted, within=5, what="a place to free up")
    for stream in open_ones:
        stream.close()


async def test_a_reconnect_gets_what_it_missed_or_a_resync(
    make_api: AppFactory, users: Users
) -> None:
    api = await make_api(**QUIET)
    screening = await api.new_screening()
    watcher = await _stream(api, screening.id)  # keeps the screening watched meanwhile
    first = await _stream(api, screening.id)
    seen = first.last_id
    first.close()
    buyers = await users.create(2)
    for token, seat in zip(buyers, screening.seat_ids[:2], strict=True):
        assert (await api.book(token, screening.id, [seat])).status == 201
    await watcher.until(lambda s: s.counts.get("locked") == 2, what="both holds")

    again = await open_stream(api.session, api.base_url, screening.id, last_event_id=seen)
    await again.until(lambda s: len(s.events) >= 2, what="the missed events")
    assert [e.name for e in again.events] == ["held", "held"]
    assert [e.id for e in again.events] == [seen + 1, seen + 2]  # type: ignore[operator]
    # Starting from what it had, the client is exact again.
    again.seats = dict(first.seats)
    for event in again.events:
        for seat_id in event.data["seat_ids"]:
            again.seats[seat_id] = "LOCKED"
    await _matches_postgres(api, again, screening.id)
    again.close()

    # An id the server cannot prove continuity from (never issued) gets a resync.
    unknown = await open_stream(api.session, api.base_url, screening.id, last_event_id=10**9)
    await unknown.next()
    assert unknown.events[0].name == "resync"
    await _matches_postgres(api, unknown, screening.id)
    unknown.close()
    watcher.close()


async def test_heartbeats_and_headers(make_api: AppFactory) -> None:
    api = await make_api(sse_heartbeat_seconds=0.2, **QUIET)
    screening = await api.new_screening()
    stream = await _stream(api, screening.id)
    headers = stream.response.headers
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["Cache-Control"].startswith("no-cache")
    assert headers["X-Request-ID"]
    deadline = time.monotonic() + 5
    while stream.pings < 2:
        assert time.monotonic() < deadline, "no heartbeat"
        with pytest.raises(TimeoutError):
            await stream.next(within=0.5)
    stream.close()


async def test_head_answers_the_stream_headers_and_no_body(make_api: AppFactory) -> None:
    api = await make_api(**QUIET)
    screening = await api.new_screening()
    head = await api.request("HEAD", f"/api/screenings/{screening.id}/events")
    assert head.status == 200 and head.body is None, head
    assert head.headers["Content-Type"].startswith("text/event-stream")


async def test_a_reconnect_to_another_process_replays_from_its_own_buffer(
    make_api: AppFactory, users: Users
) -> None:
    one, two = await make_api(**QUIET), await make_api(**QUIET)
    screening = await one.new_screening()
    watchers = [await _stream(one, screening.id), await _stream(two, screening.id)]
    leaving = await _stream(one, screening.id)
    seen = leaving.last_id
    leaving.close()
    buyers = await users.create(3)
    for token, seat in zip(buyers, screening.seat_ids[3:6], strict=True):
        assert (await one.book(token, screening.id, [seat])).status == 201
    for watcher in watchers:
        await watcher.until(lambda s: s.counts.get("locked") == 3, what="the holds")

    # Event ids are the screening's (one counter in Redis), so process two can tell.
    back = await open_stream(two.session, two.base_url, screening.id, last_event_id=seen)
    await back.until(lambda s: len(s.events) >= 3, what="the missed events")
    assert [e.name for e in back.events] == ["held"] * 3
    back.seats = dict(leaving.seats)
    for event in back.events:
        back.seats.update(dict.fromkeys(event.data["seat_ids"], "LOCKED"))
    await _matches_postgres(two, back, screening.id)
    for stream in (back, *watchers):
        stream.close()


async def test_lost_changes_are_corrected_from_postgres(make_api: AppFactory, users: Users) -> None:
    """A process that publishes nothing stands for every lost message: the viewers of another
    process still end exact, from the reconciler's corrections."""
    silent = await make_api(sse_publish=False, **QUIET)
    watched = await make_api(sse_reconcile_seconds=0.5)
    screening = await silent.new_screening()
    stream = await _stream(watched, screening.id)
    [buyer] = await users.create(1)
    seats = screening.seat_ids[:3]
    booked = await silent.book(buyer, screening.id, seats)
    assert booked.status == 201, booked
    await stream.until(
        lambda s: all(s.seats[x] == "LOCKED" for x in seats), within=15, what="the correction"
    )
    fix = stream.events[-1]
    assert fix.name == "held" and fix.data["seat_ids"] == seats
    await _matches_postgres(watched, stream, screening.id)

    ga = await silent.new_ga_screening(10)
    counts = await open_stream(watched.session, watched.base_url, ga)
    await counts.until(lambda s: bool(s.counts), what="the first resync")
    assert (await silent.book_places(buyer, ga, 4)).status == 201
    truth = await watched.place_counts(ga)  # PostgreSQL
    assert truth["locked"] == 4
    await counts.until(lambda s: s.counts == truth, within=15, what="the counts' correction")
    assert counts.events[-1].name == "resync"
    stream.close()
    counts.close()


async def test_redis_down_is_503_live_unavailable_and_streams_come_back_with_it(
    make_api: AppFactory, users: Users, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path).start()  # our own, to kill and restart
    try:
        api = await make_api(redis_url=redis.url, **QUIET)
        screening = await api.new_screening()
        stream = await _stream(api, screening.id)
        redis.kill()

        async def ended() -> bool:
            try:
                await stream.next(within=1)
            except (aiohttp.ClientError, AssertionError):  # cut off, or ended cleanly
                return True
            except TimeoutError:
                pass
            return False

        await wait_for(ended, within=30, what="the stream to end with Redis gone")
        path = f"/api/screenings/{screening.id}/events"
        down = await api.get(path)
        assert down.status == 503, down
        assert down.body["error"]["code"] == "live_unavailable"
        assert down.headers["Content-Type"].startswith("application/json")
        assert int(down.headers["Retry-After"]) >= 1
        assert (await api.get(f"/api/screenings/{screening.id}/seats/")).status == 200  # poll

        redis.start()  # the same port, empty: no restart of the API

        async def admitted() -> bool:
            reply = await api.session.get(api.base_url + path)
            reply.close()
            return reply.status == 200

        await wait_for(admitted, within=30, what="streams to be admitted again")
        again = await _stream(api, screening.id)
        [buyer] = await users.create(1)
        assert (await api.book(buyer, screening.id, screening.seat_ids[:1])).status == 201
        await again.until(lambda s: s.counts.get("locked") == 1, within=10, what="the hold")
        await _matches_postgres(api, again, screening.id)
        again.close()
    finally:
        redis.close()


async def test_the_first_viewer_after_an_idle_start_gets_events(
    make_api: AppFactory, users: Users, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed's liveness check must not count the time before anything was watched as
    Redis's silence (it did: the first viewer after 6 idle seconds joined a hub the feed had
    just been declared lost under, and got pings and nothing else)."""
    monkeypatch.setattr(live_redis, "PING_SECONDS", 0.1)  # "silent" after 0.3 s
    api = await make_api(**QUIET)
    screening = await api.new_screening()
    await asyncio.sleep(1.0)  # the idle time under test: nothing is watched yet
    stream = await _stream(api, screening.id)
    [buyer] = await users.create(1)
    assert (await api.book(buyer, screening.id, screening.seat_ids[:1])).status == 201
    await stream.until(lambda s: s.counts.get("locked") == 1, within=10, what="the hold")
    await _matches_postgres(api, stream, screening.id)
    stream.close()
