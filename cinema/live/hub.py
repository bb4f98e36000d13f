"""One watched screening in one process: its seats' status as the viewers know it, the last
event id, a replay buffer for reconnects, and the viewers themselves.

A general-admission screening has places, not seats a client knows: its viewers get `counts`
events (no ids). A change names the places it moved but not where they came from, so a place
this hub has not seen before is taken to come from its usual state (a hold from AVAILABLE, a
sale or a release from LOCKED); the reconciler corrects the counts if that guess was wrong (a
refund of a place sold before this hub loaded)."""

from __future__ import annotations

from collections import deque
from typing import Any

from cinema.booking.live import ChangeKind, SeatChange
from cinema.booking.model import SeatMap, SeatStatus
from cinema.live import frames
from cinema.live.viewer import Batch, Viewer

STATUS_OF = {
    ChangeKind.HELD: SeatStatus.LOCKED,
    ChangeKind.RELEASED: SeatStatus.AVAILABLE,
    ChangeKind.SOLD: SeatStatus.SOLD,
}
KIND_OF = {status: kind for kind, status in STATUS_OF.items()}
USUAL_BEFORE = {
    ChangeKind.HELD: SeatStatus.AVAILABLE,
    ChangeKind.RELEASED: SeatStatus.LOCKED,
    ChangeKind.SOLD: SeatStatus.LOCKED,
}
COUNTS_EVENT = "counts"  # general admission


class ScreeningHub:
    def __init__(self, screening_id: int, replay_size: int) -> None:
        self.screening_id = screening_id
        self.last_id = 0
        self.loaded = False
        self.loading = False
        self.pending: list[tuple[int, SeatChange]] = []  # arrived while (re)loading
        self.viewers: set[Viewer] = set()
        self.behind: set[Viewer] = set()  # viewers with an outbox to retry at each flush
        self.suspects: dict[int, tuple[SeatStatus, SeatStatus]] = {}  # see drift()
        self._status: dict[int, SeatStatus] = {}
        self._order: tuple[int, ...] = ()
        self._counts = dict.fromkeys(SeatStatus, 0)
        self._replay: deque[tuple[int, bytes]] = deque(maxlen=replay_size)
        self._resync: bytes | None = None
        self._unsent: list[bytes] = []  # frames for the next flush()
        self.general_admission = False
        self._suspect_counts: dict[SeatStatus, int] | None = None  # see drift_counts()

    def load(self, seat_map: SeatMap, last_id: int) -> None:
        """Start over from the authority's seat map, as of event `last_id`."""
        self._status = {entry.id: entry.status for entry in seat_map.seats}
        self._order = tuple(entry.id for entry in seat_map.seats)
        self.general_admission = seat_map.totals is not None
        self._counts = seat_map.counts()
        self.last_id = last_id
        self._replay.clear()
        self._resync = None
        self.suspects = {}
        self._suspect_counts = None
        self.loaded = True

    def apply(self, event_id: int, change: SeatChange) -> bytes:
        """Apply event `event_id` and return its frame (kept for replay)."""
        status = STATUS_OF[change.kind]
        for seat_id in change.seat_ids:
            old = self._status.get(seat_id)
            if old is None:
                if not self.general_admission:
                    continue  # not a seat of this hall
                old = USUAL_BEFORE[change.kind]
            if old is status:
                continue
            self._counts[old] -= 1
            self._counts[status] += 1
            self._status[seat_id] = status
        self.last_id = event_id
        self._resync = None
        data: dict[str, Any] = {"screening_id": self.screening_id}
        if self.general_admission:
            data |= {"change": change.kind.value, "quantity": len(change.seat_ids)}
        else:
            data["seat_ids"] = list(change.seat_ids)
        data |= {"counts": self.counts(), "at": change.at}
        name = COUNTS_EVENT if self.general_admission else change.kind.value
        frame = frames.event(event_id, name, data)
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
                "general_admission": self.general_admission,
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
        """Queue a frame for every viewer; flush() sends it."""
        self._unsent.append(frame)

    def flush(self) -> None:
        """Send what was queued since the last flush to every viewer as one bytes object,
        written to each viewer's connection here and now: a viewer costs one write per flush
        however many changes it carries (an onsale makes hundreds a second; a write per change
        per viewer would cost more than the bookings). Call it every batch interval even when
        nothing is queued: viewers left behind catch up here."""
        if self.behind:  # first what waited, so each viewer gets its frames in order
            self.behind = {viewer for viewer in self.behind if viewer.catch_up()}
        if not self._unsent:
            return
        data = self._unsent[0] if len(self._unsent) == 1 else b"".join(self._unsent)
        batch, self._unsent = Batch(data, len(self._unsent)), []
        for viewer in list(self.viewers):
            if viewer.deliver(batch):
                self.behind.add(viewer)

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

    def drift_counts(self, seat_map: SeatMap) -> bool:
        """General admission: whether the counts here differed from the authority's the same
        way in this and the previous check; if so they are taken from it."""
        truth = seat_map.counts()
        if truth == self._counts:
            self._suspect_counts = None
            return False
        if self._suspect_counts != truth:
            self._suspect_counts = truth
            return False
        self._counts = dict(truth)
        self._resync = None
        self._suspect_counts = None
        return True
