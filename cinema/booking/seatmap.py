"""Seat map assembly. A screening's seats never change and an entry is immutable, so each
(seat, status) entry is built once per process and reused; a read only looks up the seats
that have a live reservation."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from cinema.booking import rules
from cinema.booking.model import LiveReservation, SeatMap, SeatMapEntry, SeatStatus
from cinema.catalogue.model import ScreeningSnapshot


class _Entries:
    def __init__(self, snapshot: ScreeningSnapshot) -> None:
        self.snapshot = snapshot
        self.index = {seat.id: i for i, seat in enumerate(snapshot.seats)}
        self.available = tuple(self._entry(i, SeatStatus.AVAILABLE) for i in self.index.values())
        self.others: dict[tuple[int, SeatStatus], SeatMapEntry] = {}

    def _entry(self, i: int, status: SeatStatus) -> SeatMapEntry:
        seat = self.snapshot.seats[i]
        return SeatMapEntry(
            id=seat.id,
            row=seat.row_label,
            seat=seat.number,
            category=seat.category,
            status=status,
        )

    def entry(self, i: int, status: SeatStatus) -> SeatMapEntry:
        if status is SeatStatus.AVAILABLE:
            return self.available[i]
        found = self.others.get((i, status))
        if found is None:
            found = self.others[(i, status)] = self._entry(i, status)
        return found


class SeatMapBuilder:
    def __init__(self, cache_size: int = 128) -> None:
        self._cache: OrderedDict[int, _Entries] = OrderedDict()
        self._cache_size = cache_size

    def _entries(self, snapshot: ScreeningSnapshot) -> _Entries:
        screening_id = snapshot.screening.id
        entries = self._cache.get(screening_id)
        if entries is not None and entries.snapshot is snapshot:
            self._cache.move_to_end(screening_id)
            return entries
        entries = self._cache[screening_id] = _Entries(snapshot)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entries

    def build(self, snapshot: ScreeningSnapshot, live: Iterable[LiveReservation]) -> SeatMap:
        """The seats in the snapshot's order, each with its status from `live` (a seat with
        no live reservation is AVAILABLE)."""
        entries = self._entries(snapshot)
        seats = list(entries.available)
        index = entries.index
        for reservation in live:
            i = index.get(reservation.seat_id)
            if i is not None:
                seats[i] = entries.entry(i, rules.seat_status(reservation))
        return SeatMap(screening_id=snapshot.screening.id, seats=tuple(seats))
