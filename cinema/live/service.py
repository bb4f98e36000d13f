"""Live seat status for one process: one feed subscription per watched screening, fanned out
in-process to its viewers. The feed (cinema/live_redis.py) carries every process's seat
changes with ids that increase per screening; the seat map from the authority (PostgreSQL)
is read when a screening is first watched, after a gap in the ids, and every
`reconcile_seconds` to correct what the stream got wrong (a lost or reordered event)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cinema.booking.live import SeatChange, SeatChangeSink
from cinema.booking.model import SeatMap, SeatStatus
from cinema.errors import DomainError
from cinema.live import frames
from cinema.live.hub import KIND_OF, ScreeningHub
from cinema.live.viewer import Viewer

log = logging.getLogger(__name__)

REPLAY_EVENTS = 1024  # per screening: how far back a reconnect can be replayed
LINGER_SECONDS = 30.0  # an unwatched screening stays subscribed this long (reconnects replay)
RECONNECT_MS = 2000
OPEN_ATTEMPTS = 3


class LiveUnavailable(DomainError):
    """The feed (Redis) cannot be reached: no live status; clients poll the seat map."""

    code = "live_unavailable"


class TooManyStreams(DomainError):
    """This client address already has its allowed number of streams open."""

    code = "too_many_streams"


class FeedLost(Exception):
    """The feed connection broke; events may have been missed."""


class ChangeFeed(Protocol):
    async def subscribe(self, screening_id: int) -> None:
        """Start receiving the screening's changes; raises LiveUnavailable."""
        ...

    async def unsubscribe(self, screening_id: int) -> None: ...

    async def last_id(self, screening_id: int) -> int:
        """The id of the screening's latest change (0: none yet); raises LiveUnavailable."""
        ...

    def messages(self) -> AsyncIterator[tuple[int, int, SeatChange]]:
        """(screening id, event id, change) as they arrive; raises FeedLost."""
        ...

    async def reset(self) -> None:
        """After FeedLost: forget every subscription."""
        ...


class StreamLeases(Protocol):
    """Streams per client address, counted over every process."""

    renew_seconds: float

    async def take(self, client: str, cap: int) -> str | None:
        """A lease id, or None if `client` has `cap` streams open; raises LiveUnavailable."""
        ...

    async def give_back(self, client: str, lease: str) -> None:
        """Never raises (an unreturned lease expires)."""
        ...

    async def renew(self, held: Mapping[str, str]) -> None:
        """Keep these leases (id -> client) alive; never raises."""
        ...


SeatMaps = Callable[[int], Awaitable[SeatMap]]


@dataclass(frozen=True)
class LiveLimits:
    max_per_client: int = 8  # 0: no cap
    # Frames; a viewer this far behind is dropped. An outbox holds references to batches
    # shared by every viewer of the screening: at most 8 bytes a frame per viewer.
    viewer_queue: int = 1024
    reconcile_seconds: float = 5.0
    heartbeat_seconds: float = 15.0
    batch_seconds: float = 0.05  # changes reach the viewers at most this late, one write each


class LiveSeats:
    def __init__(
        self,
        feed: ChangeFeed,
        seat_maps: SeatMaps,
        sink: SeatChangeSink,
        limits: LiveLimits,
        leases: StreamLeases,
    ) -> None:
        self._feed = feed
        self._leases = leases
        self._held: dict[str, str] = {}  # lease id -> client address
        self._seat_maps = seat_maps
        self._sink = sink
        self._limits = limits
        self._hubs: dict[int, ScreeningHub] = {}
        self._opening: dict[int, asyncio.Future[ScreeningHub]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def viewers(self) -> int:
        return sum(len(hub.viewers) for hub in self._hubs.values())

    def backlogs(self, screening_id: int) -> list[int]:
        """Frames waiting in each viewer's outbox (what this process holds for them)."""
        hub = self._hubs.get(screening_id)
        return [] if hub is None else [viewer.queued for viewer in hub.viewers]

    @contextlib.asynccontextmanager
    async def watch(
        self, screening_id: int, client: str, last_event_id: int | None
    ) -> AsyncIterator[Viewer]:
        """A viewer of the screening, its outbox already holding what it missed since
        `last_event_id` (or a resync); counted against `client`'s cap while open."""
        cap = self._limits.max_per_client
        lease = await self._leases.take(client, cap) if cap else ""
        if lease is None:
            raise TooManyStreams(f"at most {cap} live streams per client")
        if lease:
            self._held[lease] = client
        try:
            hub = await self._hub(screening_id)
            viewer = Viewer(client, self._limits.viewer_queue)
            viewer.send(frames.retry(RECONNECT_MS))
            hub.flush()  # what the others have not been sent yet is in the resync or replay
            missed = hub.since(last_event_id)
            for frame in missed if missed is not None else [hub.resync_frame()]:
                viewer.send(frame)
            hub.viewers.add(viewer)
            hub.behind.add(viewer)  # its outbox goes out once its stream starts
            try:
                yield viewer
            finally:
                hub.viewers.discard(viewer)
                hub.behind.discard(viewer)
                if not hub.viewers:
                    self._later(self._close_if_idle(hub), "live-linger")
        finally:
            if self._held.pop(lease, None) is not None:
                self._later(self._leases.give_back(client, lease), "live-lease")

    async def renew_leases_forever(self) -> None:
        while True:
            await asyncio.sleep(self._leases.renew_seconds)
            if self._held:
                await self._leases.renew(dict(self._held))

    async def _hub(self, screening_id: int) -> ScreeningHub:
        for _ in range(OPEN_ATTEMPTS):
            hub = self._hubs.get(screening_id)
            if hub is not None and hub.loaded:
                return hub
            opening = self._opening.get(screening_id)
            if opening is None:  # the first viewer opens it; the others wait for its answer
                opening = asyncio.ensure_future(self._open(screening_id))
                self._opening[screening_id] = opening
                opening.add_done_callback(lambda _: self._opening.pop(screening_id, None))
            hub = await asyncio.shield(opening)
            # The feed may have been lost while it opened: that hub gets no more events, and
            # a viewer joining it would wait forever on a stream that only sends pings.
            if self._hubs.get(screening_id) is hub:
                return hub
        raise LiveUnavailable("the live feed keeps breaking")

    async def _open(self, screening_id: int) -> ScreeningHub:
        hub = ScreeningHub(screening_id, REPLAY_EVENTS)
        hub.loading = True
        self._hubs[screening_id] = hub  # events arriving from now on wait in hub.pending
        try:
            await self._feed.subscribe(screening_id)
            await self._load(hub)
        except BaseException:
            if self._hubs.get(screening_id) is hub:
                del self._hubs[screening_id]
            with contextlib.suppress(Exception):
                await self._feed.unsubscribe(screening_id)
            raise
        return hub

    async def _load(self, hub: ScreeningHub) -> None:
        """(Re)read the seat map, then apply what arrived meanwhile. The id is read before the
        map, so the map includes at least every change up to it; later changes are applied
        on top (each names a status, not a difference, so applying one twice is harmless)."""
        hub.loading = True
        try:
            last_id = await self._feed.last_id(hub.screening_id)
            hub.load(await self._seat_maps(hub.screening_id), last_id)
            for event_id, change in sorted(hub.pending, key=lambda p: p[0]):
                if event_id > hub.last_id:
                    hub.apply(event_id, change)
        finally:
            hub.pending = []
            hub.loading = False

    def deliver(self, screening_id: int, event_id: int, change: SeatChange) -> None:
        hub = self._hubs.get(screening_id)
        if hub is None:
            return
        if hub.loading:
            hub.pending.append((event_id, change))
        elif event_id == hub.last_id + 1:
            hub.broadcast(hub.apply(event_id, change))
        elif event_id > hub.last_id or event_id < hub.last_id - REPLAY_EVENTS:
            # A gap (a message lost while the feed reconnected) or the ids restarted (Redis
            # lost the counter): read the seat map again and resync everyone.
            hub.pending.append((event_id, change))
            hub.loading = True
            self._later(self._resync(hub), "live-resync")
        # else: an older id, already in the map this hub loaded

    async def _resync(self, hub: ScreeningHub) -> None:
        try:
            await self._load(hub)
        except Exception as exc:
            log.warning("live resync of screening %s failed (%r)", hub.screening_id, exc)
            self._forget(hub)
            return
        hub.broadcast(hub.resync_frame())

    async def run(self) -> None:
        """Read the feed until cancelled. A broken feed drops every viewer: each reconnects,
        and gets a fresh resync, or a 503 while the feed stays down."""
        while True:
            try:
                async for screening_id, event_id, change in self._feed.messages():
                    # No pause between messages: under load a loop turn per message made
                    # the feed slower than the changes (delivery fell behind by seconds).
                    # A message costs an append; viewers get what piled up at the next flush.
                    self.deliver(screening_id, event_id, change)
            except FeedLost as exc:
                log.warning("live feed lost (%r); dropping %d viewer(s)", exc, self.viewers)
                for hub in list(self._hubs.values()):
                    self._forget(hub)
                await self._feed.reset()
                await asyncio.sleep(1.0)

    async def heartbeat_forever(self) -> None:
        """A `: ping` to every viewer: proxies see traffic, a dead peer fails the write."""
        while True:
            await asyncio.sleep(self._limits.heartbeat_seconds)
            for hub in list(self._hubs.values()):
                hub.broadcast(frames.HEARTBEAT)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._limits.batch_seconds)
            for hub in list(self._hubs.values()):
                hub.flush()

    async def reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self._limits.reconcile_seconds)
            for hub in list(self._hubs.values()):
                if hub.viewers and not hub.loading:
                    try:
                        self._correct(hub, await self._seat_maps(hub.screening_id))
                    except Exception as exc:
                        log.warning("live reconcile of %s failed (%r)", hub.screening_id, exc)

    def _correct(self, hub: ScreeningHub, seat_map: SeatMap) -> None:
        """Publish the authority's status of drifted seats as ordinary changes, so every
        process's viewers (and replay buffers) get them in id order. General admission
        has no seats to name: its counts are corrected here, for this process's viewers."""
        if hub.general_admission:
            if hub.drift_counts(seat_map):
                log.info("live counts of screening %s corrected", hub.screening_id)
                hub.broadcast(hub.resync_frame())
            return
        by_status: defaultdict[SeatStatus, list[int]] = defaultdict(list)
        now = time.time()
        for seat_id, status in hub.drift(seat_map).items():
            by_status[status].append(seat_id)
        for status, seat_ids in by_status.items():
            log.info("live status of screening %s corrected: %s", hub.screening_id, seat_ids)
            change = SeatChange(KIND_OF[status], hub.screening_id, tuple(sorted(seat_ids)), now)
            self._sink.publish(change)

    async def _close_if_idle(self, hub: ScreeningHub) -> None:
        await asyncio.sleep(LINGER_SECONDS)
        if not hub.viewers and self._hubs.get(hub.screening_id) is hub:
            del self._hubs[hub.screening_id]
            with contextlib.suppress(Exception):
                await self._feed.unsubscribe(hub.screening_id)

    def _forget(self, hub: ScreeningHub) -> None:
        if self._hubs.get(hub.screening_id) is hub:
            del self._hubs[hub.screening_id]
        for viewer in list(hub.viewers):
            viewer.drop()

    def drop_all(self) -> None:
        """Close every stream (shutdown: a stream never ends by itself)."""
        for hub in list(self._hubs.values()):
            for viewer in list(hub.viewers):
                viewer.drop()

    def _later(self, work: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self.drop_all()
        held, self._held = self._held, {}
        with contextlib.suppress(TimeoutError):  # unreturned leases expire by themselves
            returns = (self._leases.give_back(client, lease) for lease, client in held.items())
            await asyncio.wait_for(asyncio.gather(*returns), 2.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
