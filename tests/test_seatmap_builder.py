"""SeatMapBuilder reuses entries between reads; its maps must be exactly what building every
entry afresh gives, whatever the mix of reservations."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from cinema.booking import rules
from cinema.booking.model import BookingStatus, LiveReservation, SeatMap, SeatMapEntry
from cinema.booking.seatmap import SeatMapBuilder
from cinema.catalogue.model import Screening, ScreeningSnapshot, Seat


def _snapshot(screening_id: int, seats: int) -> ScreeningSnapshot:
    screening = Screening(screening_id, 1, 1, datetime.now(UTC), {"standard": 900}, "eur")
    return ScreeningSnapshot.of(
        screening,
        tuple(Seat(1000 + n, f"R{n // 10}", n // 10, n % 10 + 1, "standard") for n in range(seats)),
    )


def _fresh(snapshot: ScreeningSnapshot, live: list[LiveReservation]) -> SeatMap:
    by_seat = {r.seat_id: r for r in live}
    return SeatMap(
        snapshot.screening.id,
        tuple(
            SeatMapEntry(
                s.id, s.row_label, s.number, s.category, rules.seat_status(by_seat.get(s.id))
            )
            for s in snapshot.seats
        ),
    )


def test_reused_entries_give_the_same_map_as_fresh_ones() -> None:
    builder = SeatMapBuilder()
    rng = random.Random(7)
    snapshot = _snapshot(5, 60)
    for _ in range(30):
        live = [
            LiveReservation(seat.id, rng.choice(list(BookingStatus)), rng.random() < 0.3)
            for seat in rng.sample(snapshot.seats, rng.randint(0, 60))
        ]
        live.append(LiveReservation(999_999, BookingStatus.CONFIRMED, False))  # not in the hall
        assert builder.build(snapshot, live) == _fresh(snapshot, live)


def test_a_new_snapshot_of_the_same_screening_is_not_served_old_entries() -> None:
    builder = SeatMapBuilder(cache_size=1)
    first, second, other = _snapshot(5, 3), _snapshot(5, 4), _snapshot(6, 2)
    assert len(builder.build(first, []).seats) == 3
    assert len(builder.build(second, []).seats) == 4
    assert len(builder.build(other, []).seats) == 2
    assert builder.build(second, []) == _fresh(second, [])
