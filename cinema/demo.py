"""A demo cinema for a newcomer's first run: movies, two halls, screenings over the next days,
an open-air general-admission screening and a one-ticket-per-customer premiere."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cinema.auth.errors import EmailTaken
from cinema.auth.model import Role
from cinema.auth.service import AccountService
from cinema.auth.tokens import TokenIssuer
from cinema.catalogue.service import CatalogueService
from cinema.pricing.model import FeesSpec, NewPromoCode, PromoKind, TicketTypeSpec
from cinema.pricing.service import PromoService
from cinema.settings import Settings
from cinema.store.catalogue import PgCatalogueStore
from cinema.store.pool import create_pool
from cinema.store.promos import PgPromoStore
from cinema.store.users import PgUserStore

DEMO_STAFF = ("staff@cinema.example", "staff-password")
DEMO_CUSTOMER = ("customer@cinema.example", "customer-password")
DEMO_BOX_OFFICE = ("boxoffice@cinema.example", "boxoffice-password")

MOVIES = [
    ("The Last Projectionist", "A night-shift projectionist finds one reel too many.", 112),
    ("Seat 13F", "Two strangers, one armrest, a very long flight.", 98),
    ("Aisle of the Dead", "Horror in the dark of screen 2.", 104),
]

MAIN_HALL = {
    "rows": [{"label": label, "seats": 14} for label in "ABCDEFGH"]
    + [{"label": "J", "category": "vip", "seats": 12}]
}


def _studio_row(label: str) -> dict[str, object]:
    left: list[object] = [1, 2, 3, 4]
    right: list[object] = [5, 6, 7, 8]
    return {"label": label, "seats": [*left, None, *right]}


STUDIO = {
    "rows": [
        {
            "label": "A",
            "seats": [
                {"number": 1, "category": "accessible"},
                {"number": 2, "category": "accessible"},
                None,
                3,
                4,
                5,
                6,
            ],
        },
        *(_studio_row(label) for label in "BCDE"),
    ]
}

# The main hall sells three ticket types and charges a booking fee per ticket.
TICKET_TYPES = [
    TicketTypeSpec("adult", "Adult"),
    TicketTypeSpec("child", "Child", discount=Decimal("4.00"), min_age_note="under 12"),
    TicketTypeSpec(
        "student", "Student", prices={"standard": Decimal("9.50"), "vip": Decimal("14.00")}
    ),
]
FEES = FeesSpec(per_ticket=Decimal("0.75"))
# 10% off, 500 uses, once per customer.
WELCOME10 = NewPromoCode(
    "WELCOME10", PromoKind.PERCENT, Decimal(10), 500, 1, None, None, None, None
)


async def load_demo(settings: Settings) -> str:
    pool = await create_pool(settings.database_url, 1, 2)
    try:
        catalogue = CatalogueService(PgCatalogueStore(pool))
        accounts = AccountService(PgUserStore(pool), TokenIssuer(settings.jwt_secret, 60))
        for email, password, role in (
            (*DEMO_STAFF, Role.ADMIN),
            (*DEMO_BOX_OFFICE, Role.BOX_OFFICE),
            (*DEMO_CUSTOMER, Role.CUSTOMER),
        ):
            with contextlib.suppress(EmailTaken):
                await accounts.register(email, password, role=role)
        if await catalogue.movies(limit=1):
            return "demo data already loaded\n" + _credentials()
        movies = [await catalogue.add_movie(*m) for m in MOVIES]
        main = await catalogue.add_hall("Main hall", MAIN_HALL)
        studio = await catalogue.add_hall("Studio", STUDIO)
        today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        count = 0
        for day in range(3):
            for slot, movie in enumerate(movies):
                starts = today + timedelta(days=day, hours=3 + 3 * slot)
                await catalogue.add_screening(
                    movie.id,
                    main.id,
                    starts,
                    {"standard": "12.50", "vip": "18.00"},
                    "usd",
                    TICKET_TYPES,
                    FEES,
                )
                await catalogue.add_screening(
                    movie.id,
                    studio.id,
                    starts + timedelta(minutes=30),
                    {"standard": "9.00", "accessible": "9.00"},
                    "usd",
                )
                count += 2
        # An open-air general-admission screening (a capacity, no seats), and a premiere that
        # allows one ticket per customer.
        await catalogue.add_screening(
            movies[0].id,
            None,
            today + timedelta(days=1, hours=10),
            {"general": "15.00"},
            "usd",
            capacity=500,
            max_tickets_per_customer=4,
        )
        await catalogue.add_screening(
            movies[1].id,
            main.id,
            today + timedelta(days=2, hours=11),
            {"standard": "20.00", "vip": "30.00"},
            "usd",
            max_tickets_per_customer=1,
        )
        count += 2
        await PromoService(PgPromoStore(pool)).create(WELCOME10)
        loaded = f"demo data loaded: {len(movies)} movies, 2 halls, {count} screenings"
        return loaded + ", promo code WELCOME10\n" + _credentials()
    finally:
        await pool.close()


def _credentials() -> str:
    return (
        f"staff login:    {DEMO_STAFF[0]} / {DEMO_STAFF[1]}\n"
        f"box office:     {DEMO_BOX_OFFICE[0]} / {DEMO_BOX_OFFICE[1]}\n"
        f"customer login: {DEMO_CUSTOMER[0]} / {DEMO_CUSTOMER[1]}"
    )
