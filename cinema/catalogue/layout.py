"""Hall layouts: the short form (`{"label": "A", "seats": 12}`) and the full form, where a row
lists its seats one by one (a number, `{"number": n, "category": c}`, or `null` for an aisle)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cinema.catalogue.model import SeatSpec
from cinema.validation import describe

MAX_ROWS = 100
MAX_SLOTS_PER_ROW = 150
MAX_SEATS = 5_000
MAX_SEAT_NUMBER = 999
DEFAULT_CATEGORY = "standard"

RowLabel = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,4}$")]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
SeatNumber = Annotated[int, Field(ge=1, le=MAX_SEAT_NUMBER)]


class SeatEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    number: SeatNumber
    category: Category | None = None


class RowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: RowLabel
    category: Category = DEFAULT_CATEGORY
    seats: (
        Annotated[int, Field(ge=1, le=MAX_SLOTS_PER_ROW)]
        | Annotated[
            list[SeatNumber | SeatEntry | None], Field(min_length=1, max_length=MAX_SLOTS_PER_ROW)
        ]
    )


class LayoutIn(BaseModel):
    """A hall layout as clients send it."""

    model_config = ConfigDict(extra="forbid")
    rows: Annotated[list[RowIn], Field(min_length=1, max_length=MAX_ROWS)]


class LayoutError(ValueError):
    """The layout cannot describe a real hall; the message says why."""


def parse_layout(raw: Any) -> tuple[dict[str, Any], list[SeatSpec]]:
    """Validate a layout; return its normalized full form and its seats in row, then
    position order."""
    try:
        layout = raw if isinstance(raw, LayoutIn) else LayoutIn.model_validate(raw)
    except ValidationError as exc:
        raise LayoutError(describe(exc, "the layout")[0]) from None
    seen_labels: set[str] = set()
    seats: list[SeatSpec] = []
    normalized_rows: list[dict[str, Any]] = []
    for row_index, row in enumerate(layout.rows):
        if row.label in seen_labels:
            raise LayoutError(f"row label {row.label!r} appears more than once")
        seen_labels.add(row.label)
        slots: list[SeatEntry | None] = (
            [SeatEntry(number=n) for n in range(1, row.seats + 1)]
            if isinstance(row.seats, int)
            else [SeatEntry(number=s) if isinstance(s, int) else s for s in row.seats]
        )
        numbers: set[int] = set()
        normalized: list[dict[str, Any] | None] = []
        for position, slot in enumerate(slots):
            if slot is None:
                normalized.append(None)
                continue
            if slot.number in numbers:
                raise LayoutError(f"row {row.label!r} has seat {slot.number} more than once")
            numbers.add(slot.number)
            category = slot.category or row.category
            seats.append(SeatSpec(row.label, row_index, slot.number, position, category))
            normalized.append({"number": slot.number, "category": category})
        if not numbers:
            raise LayoutError(f"row {row.label!r} has no seats, only gaps")
        normalized_rows.append({"label": row.label, "seats": normalized})
    if len(seats) > MAX_SEATS:
        raise LayoutError(f"a hall may have at most {MAX_SEATS} seats, this one has {len(seats)}")
    return {"rows": normalized_rows}, seats
