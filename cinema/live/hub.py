"""One watched screening in one process: its seats' status as the viewers know it, the last
event id, a replay buffer for reconnects, and the viewers themselves."""

from __future__ import annotations

from collections import deque
from typing import Any

from cinema.booking.live import ChangeKind, SeatChange
from cinema.booking.model import SeatMap, SeatStatus
from cinema.live import frames
from cinema.live.viewer import Viewer

STATUS_OF = {
    ChangeKind.HELD: SeatStatus.LOCKED,
    ChangeKind.RELEASED: SeatStatus.AVAILABLE,
    ChangeKind.SOLD: SeatStatus.SOLD,
}
KIND_OF = {status: kind for kind, status in STATUS_OF.items()}


class ScreeningHub:
    def __init__(self, screening_id: int, replay_size: int) -> None:
        self.screening_id = screening_id
        self.last_id = 0
        self.loaded = False
        self.loading = False
        self.pending: list[tuple[int, SeatChange]] = []  # arrived while (re)loading
        self.viewers: set[Viewer] = set()
        self.suspects: dict[int, tuple[SeatStatus, SeatStatus]] = {}  # see drift()
        self._status: dict[int, SeatStatus] = {}
        self._order: tuple[int, ...] = ()
        self._counts = dict.fromkeys(SeatStatus, 0)
        self._replay: deque[tuple[int, bytes]] = deque(maxlen=replay_size)
        self._resync: bytes | None = None

    def load(self, seat_map: SeatMap, last_id: int) -> None:
        """Start over from the authority's seat map, as of event `last_id`."""
        self._status = {entry.id: entry.status for entry in seat_map.seats}
        self._order = tuple(entry.id for entry in seat_map.seats)
        self._counts = dict.fromkeys(SeatStatus, 0)
        for status in self._status.values():
            self._counts[status] += 1
        self.last_id = last_id
        self._replay.clear()
        self._resync = None
        self.suspects = {}
        self.loaded = True

    def apply(self, event_id: int, change: SeatChange) -> bytes:
        """Apply event `event_id` and return its frame (kept for replay)."""
        status = STATUS_OF[change.kind]
        for seat_id in change.seat_ids:
            old = self._status.get(seat_id)
            if old is None:
                continue  # not a seat of this hall
            self._counts[old] -= 1
            self._counts[status] += 1
            self._status[seat_id] = status
        self.last_id = event_id
        self._resync = None
        frame = frames.event(
            event_id,
            change.kind.value,
            {
                "screening_id": self.screening_id,
                "seat_ids": list(change.seat_ids),
                "counts": self.counts(),
                "at": change.at,
            },
        )
        self._replay.append((event_id, frame))
        return frame

    def counts(self) -> dict[str, int]:
        return {status.value.lower(): n for status, n in self._counts.items()}

    def resync_frame(self) -> bytes:
        """The full status of every seat as of `last_id`, encoded once per change."""
        if self._resync is None:
            data: dict[str, Any] = {
                "screening_id": self.screening_id,
                "seats": [{"id": s, "status": self._status[s].value} for s in self._order],
                "counts": self.counts(),
            }
            self._resync = frames.event(self.last_id, "resync", data)
        return self._resync

    def since(self, last_event_id: int | None) -> list[bytes] | None:
        """The frames after `last_event_id` if the buffer proves none is missing, else None."""
        if last_event_id is None or last_event_id > self.last_id:
            return None
        if last_event_id == self.last_id:
            return []
        if not self._replay or self._replay[0][0] > last_event_id + 1:
            return None
        return [frame for event_id, frame in self._replay if event_id > last_event_id]

    def broadcast(self, frame: bytes) -> None:
        for viewer in list(self.viewers):
            viewer.send(frame)

    def drift(self, seat_map: SeatMap) -> dict[int, SeatStatus]:
        """Seats whose status here differed from the authority's, the same way, in this and
        the previous check: not an event still on its way but one that was lost or arrived
        out of order. Returns them with the authority's status."""
        now: dict[int, tuple[SeatStatus, SeatStatus]] = {}
        for entry in seat_map.seats:
            ours = self._status.get(entry.id)
            if ours is not None and ours is not entry.status:
                now[entry.id] = (ours, entry.status)
        confirmed = {s: pair[1] for s, pair in now.items() if self.suspects.get(s) == pair}
        self.suspects = {s: pair for s, pair in now.items() if s not in confirmed}
        return confirmed
