"""Creating and reading movies, halls and screenings; a cache of what booking needs."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from cinema.catalogue.errors import InvalidLayout, InvalidScreening, NotFound
from cinema.catalogue.layout import LayoutError, parse_layout
from cinema.catalogue.model import (
    GA_CATEGORY,
    Hall,
    Movie,
    Screening,
    ScreeningSnapshot,
    Seat,
    SeatSpec,
)
from cinema.money import MoneyError, is_known, to_charge_minor
from cinema.pricing import setup as offer
from cinema.pricing.model import (
    DEFAULT_TICKET_TYPES,
    NO_FEES,
    Fees,
    FeesSpec,
    TicketType,
    TicketTypeSpec,
)


class CatalogueStore(Protocol):
    async def add_movie(self, title: str, description: str, duration_minutes: int) -> Movie: ...
    async def movie(self, movie_id: int) -> Movie | None: ...
    async def movies(self, limit: int, offset: int) -> list[Movie]: ...
    async def add_hall(
        self,
        name: str,
        layout: dict[str, Any],
        seats: list[SeatSpec],
        default_fees: FeesSpec | None = None,
    ) -> Hall: ...
    async def hall(self, hall_id: int) -> Hall | None: ...
    async def halls(self) -> list[Hall]: ...
    async def seats_of_hall(self, hall_id: int) -> list[Seat]: ...
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
    ) -> Screening: ...
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
    ) -> Screening: ...
    async def screening(self, screening_id: int) -> Screening | None: ...
    async def screenings(
        self,
        movie_id: int | None,
        since: datetime,
        limit: int,
        offset: int,
        include_cancelled: bool = False,
    ) -> list[Screening]: ...


class CatalogueService:
    """Screenings and halls never change once created, so a process keeps their snapshots:
    the booking path validates a request without a database round trip, and a burst of
    losers touches PostgreSQL not at all."""

    def __init__(self, store: CatalogueStore, cache_size: int = 1024) -> None:
        self._store = store
        self._cache: OrderedDict[int, ScreeningSnapshot] = OrderedDict()
        self._loading: dict[int, asyncio.Future[ScreeningSnapshot | None]] = {}
        self._cache_size = cache_size

    async def add_movie(self, title: str, description: str, duration_minutes: int) -> Movie:
        return await self._store.add_movie(title, description, duration_minutes)

    async def movie(self, movie_id: int) -> Movie:
        movie = await self._store.movie(movie_id)
        if movie is None:
            raise NotFound(f"movie {movie_id} does not exist")
        return movie

    async def movies(self, limit: int = 100, offset: int = 0) -> list[Movie]:
        return await self._store.movies(limit, offset)

    async def add_hall(self, name: str, layout: Any, default_fees: FeesSpec | None = None) -> Hall:
        """`default_fees`: the fees of a screening created in this hall without its own."""
        try:
            normalized, seats = parse_layout(layout)
        except LayoutError as exc:
            raise InvalidLayout(str(exc)) from None
        return await self._store.add_hall(name, normalized, seats, default_fees)

    async def hall(self, hall_id: int) -> Hall:
        hall = await self._store.hall(hall_id)
        if hall is None:
            raise NotFound(f"hall {hall_id} does not exist")
        return hall

    async def halls(self) -> list[Hall]:
        return await self._store.halls()

    async def add_screening(
        self,
        movie_id: int,
        hall_id: int | None,
        starts_at: datetime,
        prices: dict[str, Decimal | int | str],
        currency: str,
        ticket_types: list[TicketTypeSpec] | None = None,
        fees: FeesSpec | None = None,
        *,
        capacity: int | None = None,
        max_tickets_per_customer: int | None = None,
    ) -> Screening:
        """A seated screening in `hall_id`, or (no hall, a `capacity`) a general-admission one
        priced as the single category `general`."""
        if (hall_id is None) == (capacity is None):
            raise InvalidScreening("give exactly one of hall_id and capacity")
        if starts_at <= datetime.now(UTC):
            raise InvalidScreening("starts_at must be in the future")
        currency = currency.lower()
        if not is_known(currency):
            raise InvalidScreening(f"currency {currency.upper()} is not an ISO 4217 currency code")
        await self.movie(movie_id)
        default_fees: FeesSpec | None = None
        if capacity is not None:
            categories: tuple[str, ...] = (GA_CATEGORY,)
            where = "a general-admission screening"
        else:
            assert hall_id is not None
            hall = await self.hall(hall_id)
            categories, default_fees = hall.categories, hall.default_fees
            where = f"hall {hall_id}"
        _check_categories(set(categories), prices, where)
        try:
            minor = {category: to_charge_minor(p, currency) for category, p in prices.items()}
        except MoneyError as exc:
            raise InvalidScreening(f"invalid price: {exc}") from None
        try:
            types = offer.ticket_types(ticket_types, categories, currency)
        except offer.OfferError as exc:
            raise InvalidScreening(str(exc)) from None
        charges = _fees(fees, default_fees, currency, where)
        if capacity is not None:
            return await self._store.add_ga_screening(
                movie_id,
                starts_at,
                minor,
                currency,
                capacity,
                types,
                charges,
                max_tickets_per_customer,
            )
        assert hall_id is not None
        return await self._store.add_screening(
            movie_id, hall_id, starts_at, minor, currency, types, charges, max_tickets_per_customer
        )

    async def screening(self, screening_id: int) -> Screening:
        """Read fresh, not from the snapshot cache: a cancellation must show at once, in
        every process (the snapshot is the same screening as it was created)."""
        screening = await self._store.screening(screening_id)
        if screening is None:
            raise NotFound(f"screening {screening_id} does not exist")
        return screening

    async def screenings(
        self,
        movie_id: int | None,
        since: datetime,
        limit: int = 100,
        offset: int = 0,
        include_cancelled: bool = False,
    ) -> list[Screening]:
        """Upcoming screenings; cancelled ones only if asked (staff pages): none is for sale."""
        return await self._store.screenings(movie_id, since, limit, offset, include_cancelled)

    async def snapshot(self, screening_id: int) -> ScreeningSnapshot | None:
        cached = self._cache.get(screening_id)
        if cached is not None:
            self._cache.move_to_end(screening_id)
            return cached
        pending = self._loading.get(screening_id)
        if pending is not None:  # one load per screening, however many ask at once
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                return await self._load(screening_id)  # the first loader failed; try ourselves
        future: asyncio.Future[ScreeningSnapshot | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._loading[screening_id] = future
        try:
            snapshot = await self._load(screening_id)
        except BaseException:
            future.cancel()
            raise
        finally:
            self._loading.pop(screening_id, None)
        future.set_result(snapshot)
        if snapshot is not None:
            self._cache[screening_id] = snapshot
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return snapshot

    async def _load(self, screening_id: int) -> ScreeningSnapshot | None:
        screening = await self._store.screening(screening_id)
        if screening is None:
            return None
        if screening.general_admission:  # its places are counted, never listed
            return ScreeningSnapshot.of(screening, ())
        seats = await self._store.seats_of_hall(screening.hall_id)
        return ScreeningSnapshot.of(screening, tuple(seats))


def _fees(given: FeesSpec | None, default: FeesSpec | None, currency: str, where: str) -> Fees:
    """The screening's own fees, or else its hall's default, in the screening's currency."""
    try:
        return offer.fees(given if given is not None else default, currency)
    except offer.OfferError as exc:
        raise InvalidScreening(
            str(exc) if given is not None else f"{where}'s default fees: {exc}"
        ) from None


def _check_categories(
    categories: set[str], prices: dict[str, Decimal | int | str], what: str
) -> None:
    missing = sorted(categories - set(prices))
    if missing:
        raise InvalidScreening(f"prices are missing for seat categories {missing}")
    unused = sorted(set(prices) - categories)
    if unused:
        raise InvalidScreening(f"{what} has no seats of categories {unused}")
