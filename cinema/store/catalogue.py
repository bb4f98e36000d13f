"""Movies, halls, seats and screenings in PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from cinema.catalogue.model import GA_CATEGORY, GA_ROW, Hall, Movie, Screening, Seat, SeatSpec
from cinema.pricing.model import DEFAULT_TICKET_TYPES, NO_FEES, Fees, FeesSpec, TicketType
from cinema.store import audit
from cinema.store.pool import Pool


def _movie(row: Any) -> Movie:
    return Movie(row["id"], row["title"], row["description"], row["duration_minutes"])


def _hall(row: Any) -> Hall:
    return Hall(
        id=row["id"],
        name=row["name"],
        layout=row["layout"],
        seat_count=row["seat_count"],
        categories=tuple(row["categories"]),
        default_fees=_fees_spec(row["default_fees"]),
    )


def _fees_spec(raw: dict[str, Any] | None) -> FeesSpec | None:
    if raw is None:
        return None
    return FeesSpec(
        *(None if raw.get(k) is None else Decimal(raw[k]) for k in ("per_ticket", "percent"))
    )


def _fees_spec_json(spec: FeesSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {
        "per_ticket": None if spec.per_ticket is None else str(spec.per_ticket),
        "percent": None if spec.percent is None else str(spec.percent),
    }


def _ticket_type_json(t: TicketType) -> dict[str, Any]:
    return {
        "code": t.code,
        "name": t.name,
        "prices": t.prices,
        "discount": t.discount,
        "min_age_note": t.min_age_note,
        "max_per_booking": t.max_per_booking,
    }


def _ticket_types(raw: list[dict[str, Any]] | None) -> tuple[TicketType, ...]:
    if not raw:
        return DEFAULT_TICKET_TYPES
    return tuple(
        TicketType(
            code=t["code"],
            name=t["name"],
            prices=t.get("prices"),
            discount=t.get("discount") or 0,
            min_age_note=t.get("min_age_note"),
            max_per_booking=t.get("max_per_booking"),
        )
        for t in raw
    )


def _fees(raw: dict[str, Any] | None) -> Fees:
    if not raw:
        return NO_FEES
    return Fees(per_ticket=raw.get("per_ticket", 0), percent=Decimal(raw.get("percent", "0")))


def _screening(row: Any) -> Screening:
    return Screening(
        id=row["id"],
        movie_id=row["movie_id"],
        hall_id=row["hall_id"],
        starts_at=row["starts_at"],
        prices=dict(row["prices"]),
        currency=row["currency"],
        ticket_types=_ticket_types(row["ticket_types"]),
        fees=_fees(row["fees"]),
        capacity=row["capacity"],
        max_tickets_per_customer=row["max_tickets_per_customer"],
        cancelled_at=row["cancelled_at"],
        cancel_reason=row["cancel_reason"],
    )


_HALL_COLUMNS = """
    h.id, h.name, h.layout, h.default_fees,
    (SELECT count(*) FROM seats s WHERE s.hall_id = h.id) AS seat_count,
    ARRAY(SELECT DISTINCT s.category FROM seats s WHERE s.hall_id = h.id ORDER BY 1) AS categories
"""


_INSERT_SCREENING = """
    INSERT INTO screenings (movie_id, hall_id, starts_at, prices, currency, ticket_types, fees,
                            capacity, max_tickets_per_customer)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *
"""


def _fees_json(fees: Fees) -> dict[str, Any] | None:
    return None if fees.empty else {"per_ticket": fees.per_ticket, "percent": str(fees.percent)}


class PgCatalogueStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def add_movie(self, title: str, description: str, duration_minutes: int) -> Movie:
        row = await self._pool.fetchrow(
            "INSERT INTO movies (title, description, duration_minutes)"
            " VALUES (cinema_audited($1::text, $4::text::jsonb), $2, $3) RETURNING *",
            title,
            description,
            duration_minutes,
            audit.context(),
        )
        return _movie(row)

    async def movie(self, movie_id: int) -> Movie | None:
        row = await self._pool.fetchrow("SELECT * FROM movies WHERE id = $1", movie_id)
        return None if row is None else _movie(row)

    async def movies(self, limit: int, offset: int) -> list[Movie]:
        rows = await self._pool.fetch(
            "SELECT * FROM movies ORDER BY title, id LIMIT $1 OFFSET $2", limit, offset
        )
        return [_movie(r) for r in rows]

    async def add_hall(
        self,
        name: str,
        layout: dict[str, Any],
        seats: list[SeatSpec],
        default_fees: FeesSpec | None = None,
    ) -> Hall:
        async with audit.audited(self._pool) as conn:
            hall_id = await conn.fetchval(
                "INSERT INTO halls (name, layout, default_fees) VALUES ($1, $2, $3) RETURNING id",
                name,
                layout,
                _fees_spec_json(default_fees),
            )
            await conn.copy_records_to_table(
                "seats",
                records=[
                    (hall_id, s.row_label, s.row_index, s.number, s.position, s.category)
                    for s in seats
                ],
                columns=["hall_id", "row_label", "row_index", "number", "position", "category"],
            )
            row = await conn.fetchrow(
                f"SELECT {_HALL_COLUMNS} FROM halls h WHERE h.id = $1", hall_id
            )
        return _hall(row)

    async def hall(self, hall_id: int) -> Hall | None:
        row = await self._pool.fetchrow(
            f"SELECT {_HALL_COLUMNS} FROM halls h WHERE h.id = $1 AND NOT h.general_admission",
            hall_id,
        )
        return None if row is None else _hall(row)

    async def halls(self) -> list[Hall]:
        rows = await self._pool.fetch(
            f"SELECT {_HALL_COLUMNS} FROM halls h WHERE NOT h.general_admission ORDER BY h.id"
        )
        return [_hall(r) for r in rows]

    async def seats_of_hall(self, hall_id: int) -> list[Seat]:
        rows = await self._pool.fetch(
            "SELECT id, row_label, row_index, number, category FROM seats WHERE hall_id = $1"
            " ORDER BY row_index, number",
            hall_id,
        )
        return [
            Seat(r["id"], r["row_label"], r["row_index"], r["number"], r["category"]) for r in rows
        ]

    async def add_screening(
        self,
        movie_id: int,
        hall_id: int,
        starts_at: datetime,
        prices: dict[str, int],
        currency: str,
        ticket_types: tuple[TicketType, ...] = DEFAULT_TICKET_TYPES,
        fees: Fees = NO_FEES,
        max_tickets_per_customer: int | None = None,
    ) -> Screening:
        async with audit.audited(self._pool) as conn:
            row = await conn.fetchrow(
                _INSERT_SCREENING,
                movie_id,
                hall_id,
                starts_at,
                prices,
                currency,
                [_ticket_type_json(t) for t in ticket_types],
                _fees_json(fees),
                None,
                max_tickets_per_customer,
            )
        return _screening(row)

    async def add_ga_screening(
        self,
        movie_id: int,
        starts_at: datetime,
        prices: dict[str, int],
        currency: str,
        capacity: int,
        ticket_types: tuple[TicketType, ...] = DEFAULT_TICKET_TYPES,
        fees: Fees = NO_FEES,
        max_tickets_per_customer: int | None = None,
    ) -> Screening:
        """A general-admission screening and its places (one seat row each, in a hall of its
        own), in one transaction: one row per place is what lets buyers take places without
        queueing on a counter (cinema_take_places)."""
        async with audit.audited(self._pool) as conn:
            hall_id = await conn.fetchval(
                "INSERT INTO halls (name, layout, general_admission)"
                " VALUES ('general admission', '{}'::jsonb, true) RETURNING id"
            )
            await conn.copy_records_to_table(
                "seats",
                records=[
                    (hall_id, GA_ROW, 0, n, n - 1, GA_CATEGORY) for n in range(1, capacity + 1)
                ],
                columns=["hall_id", "row_label", "row_index", "number", "position", "category"],
            )
            row = await conn.fetchrow(
                _INSERT_SCREENING,
                movie_id,
                hall_id,
                starts_at,
                prices,
                currency,
                [_ticket_type_json(t) for t in ticket_types],
                _fees_json(fees),
                capacity,
                max_tickets_per_customer,
            )
        return _screening(row)

    async def screening(self, screening_id: int) -> Screening | None:
        row = await self._pool.fetchrow("SELECT * FROM screenings WHERE id = $1", screening_id)
        return None if row is None else _screening(row)

    async def screenings(
        self,
        movie_id: int | None,
        since: datetime,
        limit: int,
        offset: int,
        include_cancelled: bool = False,
    ) -> list[Screening]:
        rows = await self._pool.fetch(
            "SELECT * FROM screenings"
            " WHERE starts_at > $1 AND ($2::bigint IS NULL OR movie_id = $2)"
            " AND ($5 OR cancelled_at IS NULL)"
            " ORDER BY starts_at, id LIMIT $3 OFFSET $4",
            since,
            movie_id,
            limit,
            offset,
            include_cancelled,
        )
        return [_screening(r) for r in rows]
