"""Request and response models. Requests are validated with these; responses are built as
plain dicts (cheaper on hot paths) whose shape these models document and tests check."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    model_validator,
)

from cinema.auth.emails import normalize_email
from cinema.catalogue.layout import Category, LayoutIn
from cinema.pricing.model import TicketRequest

MAX_ID = 2**63 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _iso_8601(value: Any) -> Any:
    # pydantic also reads numbers as Unix times; a query string's "0.5" is a mistake, not 1970.
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be an ISO 8601 date and time, e.g. 2026-12-03T18:00:00Z")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]
Text = Annotated[str, AfterValidator(_no_nul)]
# Registration and login normalise the same way (cinema/auth/emails.py); the length bound
# here only keeps absurd input from being scanned.
Email = Annotated[str, StringConstraints(max_length=1000), AfterValidator(normalize_email)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256), AfterValidator(_no_nul)]
Price = Annotated[Decimal, Field(ge=0, le=1_000_000, allow_inf_nan=False, decimal_places=3)]
Percent = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False, decimal_places=2)]
TicketTypeCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$"
    ),
]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=10_000)


# --- auth -------------------------------------------------------------------------------
class RegisterIn(Model):
    email: Email
    password: Password


class TokenIn(Model):
    email: Email
    password: Annotated[str, StringConstraints(max_length=256), AfterValidator(_no_nul)]


class UserOut(Model):
    id: int
    email: str


RoleName = Literal["customer", "box_office", "admin"]


class RoleIn(Model):
    role: RoleName


class UserRoleOut(Model):
    id: int
    email: str
    role: RoleName


class TokenOut(Model):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int


# --- catalogue --------------------------------------------------------------------------
class MovieIn(Model):
    title: Annotated[Text, StringConstraints(min_length=1, max_length=200)]
    description: Annotated[Text, StringConstraints(max_length=5000)] = ""
    duration_minutes: Annotated[int, Field(ge=1, le=1000)]


class MovieOut(Model):
    id: int
    title: str
    description: str
    duration_minutes: int


class MovieList(RootModel[list[MovieOut]]):
    """A JSON array of movie objects."""


class TicketTypeIn(Model):
    """A ticket type: its own `prices` per seat category, or a fixed `discount` off the
    category prices, or neither (the category prices)."""

    code: TicketTypeCode
    name: Annotated[Text, StringConstraints(min_length=1, max_length=100)]
    prices: Annotated[dict[Category, Price], Field(min_length=1, max_length=20)] | None = None
    discount: Price | None = None
    min_age_note: Annotated[Text, StringConstraints(max_length=200)] | None = None
    max_per_booking: Annotated[int, Field(ge=1, le=10)] | None = None


class FeesIn(Model):
    per_ticket: Price | None = None  # in the screening's currency, per ticket
    percent: Percent | None = None  # of the subtotal


class HallFeesOut(Model):
    per_ticket: str | None
    percent: str | None


class HallIn(Model):
    name: Annotated[Text, StringConstraints(min_length=1, max_length=100)]
    layout: LayoutIn
    # the fees of a screening created in this hall without its own `fees`, in its currency
    fees: FeesIn | None = None


class HallOut(Model):
    id: int
    name: str
    layout: dict[str, object]
    seat_count: int
    categories: list[str]
    fees: HallFeesOut | None  # the default fees of its screenings (decimal strings)


MAX_CAPACITY = 100_000  # places of one general-admission screening
MAX_TICKETS_PER_CUSTOMER = 1_000


class ScreeningIn(Model):
    """A seated screening names its `hall_id`; a general-admission one gives a `capacity`
    instead (and prices the one category `general`): exactly one of the two."""

    movie_id: Id
    hall_id: Id | None = None
    capacity: Annotated[int, Field(ge=1, le=MAX_CAPACITY)] | None = None
    starts_at: AwareDatetime
    prices: Annotated[dict[Category, Price], Field(min_length=1, max_length=20)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
    ticket_types: Annotated[list[TicketTypeIn], Field(min_length=1, max_length=20)] | None = None
    fees: FeesIn | None = None
    max_tickets_per_customer: Annotated[int, Field(ge=1, le=MAX_TICKETS_PER_CUSTOMER)] | None = None

    @model_validator(mode="after")
    def _hall_or_capacity(self) -> ScreeningIn:
        if (self.hall_id is None) == (self.capacity is None):
            raise ValueError(
                "must give exactly one of hall_id (seated) and capacity (general admission)"
            )
        return self


class TicketTypeOut(Model):
    code: str
    name: str
    prices: dict[str, str] | None
    discount: str | None
    min_age_note: str | None
    max_per_booking: int | None


class FeesOut(Model):
    per_ticket: str
    percent: str


class ScreeningOut(Model):
    id: int
    movie_id: int
    hall_id: int | None  # null for general admission
    capacity: int | None  # null for a seated screening
    starts_at: datetime
    prices: dict[str, str]
    currency: str
    ticket_types: list[TicketTypeOut]  # the first is the default (for `seat_ids` bookings)
    fees: FeesOut | None
    max_tickets_per_customer: int | None
    cancelled: bool  # true: staff cancelled it; it takes no booking (409 screening_cancelled)
    cancelled_at: datetime | None
    cancel_reason: str | None


class HallList(RootModel[list[HallOut]]):
    """A JSON array of hall objects."""


class ScreeningList(RootModel[list[ScreeningOut]]):
    """A JSON array of screening objects."""


class ScreeningsQuery(Model):
    movie_id: Id | None = None
    # Cancelled screenings are left out unless asked for (staff pages: reports, the door).
    include_cancelled: bool = False
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0


class PageQuery(Model):
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0


class SeatOut(Model):
    id: int
    row: str
    seat: int
    category: str
    status: Literal["AVAILABLE", "LOCKED", "SOLD"]


class SeatCounts(Model):
    available: int
    locked: int
    sold: int


class SeatMapOut(Model):
    screening_id: int
    seats: list[SeatOut]
    counts: SeatCounts


# --- bookings ---------------------------------------------------------------------------
class SeatTicketIn(Model):
    seat_id: Id
    ticket_type: TicketTypeCode | None = None  # absent: the screening's default type


# A promo code as typed: letters, digits, - and _ (any case; no spaces).
PromoCodeText = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
]


MAX_TICKETS_PER_BOOKING = 10
TicketCount = Annotated[int, Field(ge=1, le=MAX_TICKETS_PER_BOOKING)]


class TicketsIn(Model):
    """General admission: this many places of one ticket type."""

    ticket_type: TicketTypeCode
    quantity: TicketCount


# What a booking asks for: exactly one of these fields (docs: README "Bookings").
_BOOKING_FORMS = ("seat_ids", "seats", "quantity", "tickets")


class BookingIn(Model):
    """Exactly one of `seat_ids` (the default ticket type) or `seats` (a type per seat) for a
    seated screening, `quantity` (the default type) or `tickets` (a quantity per type) for a
    general-admission one."""

    screening_id: Id
    seat_ids: Annotated[list[Id], Field(min_length=1, max_length=10)] | None = None
    seats: Annotated[list[SeatTicketIn], Field(min_length=1, max_length=10)] | None = None
    promo_code: PromoCodeText | None = None
    quantity: TicketCount | None = None
    tickets: Annotated[list[TicketsIn], Field(min_length=1, max_length=10)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> BookingIn:
        given = [name for name in _BOOKING_FORMS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"must give exactly one of {', '.join(_BOOKING_FORMS)}")
        if self.tickets is not None and sum(t.quantity for t in self.tickets) > (
            MAX_TICKETS_PER_BOOKING
        ):
            raise ValueError(f"must ask for at most {MAX_TICKETS_PER_BOOKING} tickets")
        return self

    def ticket_requests(self) -> list[TicketRequest]:
        """One request per ticket; a general-admission place has no seat_id."""
        if self.seats is not None:
            return [TicketRequest(t.seat_id, t.ticket_type) for t in self.seats]
        if self.quantity is not None:
            return [TicketRequest(None)] * self.quantity
        if self.tickets is not None:
            return [
                TicketRequest(None, t.ticket_type) for t in self.tickets for _ in range(t.quantity)
            ]
        return [TicketRequest(seat_id) for seat_id in self.seat_ids or ()]


IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,255}$")]


class PaymentOut(Model):
    provider: Literal["stripe"]
    payment_intent_id: str
    client_secret: str  # for the customer's client (Stripe.js) to pay; shown to the owner only
    status: Literal[
        "requires_payment",
        "succeeded",
        "failed",
        "canceled",
        "refund_pending",
        "refunded",
        "refund_failed",
    ]


# max_length: without it the schema advertised Model's 10,000 characters, and a query string
# that long exceeds aiohttp's 8,190-byte request line (a text/plain 400 before any handler).
Reference = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_upper=True, max_length=64, pattern=r"^[A-Za-z0-9]{8}$"
    ),
]


class BookingsQuery(Model):
    reference: Reference | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0


class TicketOut(Model):
    seat_id: int | None  # null for general admission
    category: str
    ticket_type: str
    price: str  # the unit price, decimal string in the booking's currency
    price_minor: int


class BookingOut(Model):
    id: int
    reference: str
    status: Literal["PENDING", "CONFIRMED", "CANCELLED", "COMPLETED", "NO_SHOW"]
    screening_id: int
    seat_ids: list[int]  # empty for general admission
    quantity: int  # tickets (seats or general-admission places)
    tickets: list[TicketOut]
    subtotal: str
    subtotal_minor: int
    discount: str
    discount_minor: int
    fees: str
    fees_minor: int
    total: str
    total_minor: int
    amount: str  # = total, what is charged
    amount_minor: int
    currency: str
    promo_code: str | None
    expires_at: datetime
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    payment: PaymentOut | None  # null when no payment provider is configured


class BookingList(RootModel[list[BookingOut]]):
    """A JSON array of booking objects."""


class OwnerTicketOut(TicketOut):
    """On a CONFIRMED booking only (GET /api/bookings/{id}/ of its owner)."""

    code: str | None  # what the door scans; null for a refunded or cancelled ticket
    checked_in_at: datetime | None
    qr_svg: str | None  # the code as a QR code, an SVG data URI


class OwnerBookingOut(BookingOut):
    """A CONFIRMED booking's tickets are OwnerTicketOut (with their codes)."""

    tickets: list[OwnerTicketOut | TicketOut]


# --- box office -------------------------------------------------------------------------
BookingStatusName = Literal["PENDING", "CONFIRMED", "CANCELLED", "COMPLETED", "NO_SHOW"]


class AdminBookingsQuery(Model):
    reference: Reference | None = None
    email: Email | None = None
    screening_id: Id | None = None
    status: BookingStatusName | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0


class StaffPaymentOut(Model):
    """The payment as staff see it: no client secret (that is the customer's)."""

    provider: str
    payment_intent_id: str
    status: str
    refund_id: str | None = None


class AdminBookingOut(BookingOut):
    user_id: int
    email: str
    payment: StaffPaymentOut | None  # type: ignore[assignment]


class AdminBookingList(RootModel[list[AdminBookingOut]]):
    """A JSON array of bookings, newest first."""


class StaffTicketOut(Model):
    seat_id: int | None
    row: str | None
    seat: int | None
    category: str | None
    ticket_type: str | None
    status: BookingStatusName
    checked_in_at: datetime | None
    checked_in_by: int | None


class HistoryOut(Model):
    at: datetime
    source: Literal["booking", "payment", "check_in", "audit"]
    event: str
    detail: str | None


class AdminBookingDetailOut(AdminBookingOut):
    tickets: list[StaffTicketOut]  # type: ignore[assignment]
    tickets_sent_at: datetime | None
    history: list[HistoryOut]


class CheckInIn(Model):
    code: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    screening_id: Id | None = None  # the screening the scanner is set to


class CheckInOut(Model):
    booking_id: int
    screening_id: int
    seat_id: int | None
    ticket_type: str | None
    checked_in_at: datetime


# --- refunds ---------------------------------------------------------------------------
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_no_nul),
]


class RefundIn(Model):
    """`seat_ids`: refund only these tickets (a partial refund); absent: every live ticket.
    For general admission the ids are the places' (`seat_id` of the staff booking view)."""

    reason: Reason
    seat_ids: Annotated[list[Id], Field(min_length=1, max_length=10)] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> RefundIn:
        if self.seat_ids is not None and len(set(self.seat_ids)) != len(self.seat_ids):
            raise ValueError("a seat id appears more than once")
        return self


class RefundItemOut(Model):
    seat_id: int
    amount: str
    amount_minor: int


class RefundOut(Model):
    id: int
    amount: str
    amount_minor: int
    currency: str
    reason: str
    source: Literal["staff", "customer", "screening"]
    status: Literal["pending", "refunded", "failed"]
    provider_refund_id: str | None
    requested_by: int | None
    created_at: datetime
    items: list[RefundItemOut]


class RefundedBookingOut(AdminBookingDetailOut):
    """The booking after the refund: `payment.status` refund_pending (or refunded once the
    provider confirmed, or at once with nothing to refund at a provider)."""

    refunded: str
    refunded_minor: int
    refunds: list[RefundOut]  # newest first


class CancelScreeningIn(Model):
    reason: Reason = "the screening was cancelled"


class CancelScreeningOut(Model):
    screening_id: int
    cancelled_at: datetime
    reason: str


# --- promo codes -----------------------------------------------------------------------
class PromoCodeIn(Model):
    """`value`: a percent (0-100] of the eligible tickets, or (fixed) an amount off in the
    booked screening's currency. Optional limits to screenings and ticket types."""

    code: Annotated[
        str, StringConstraints(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    ]
    kind: Literal["percent", "fixed"]
    value: Annotated[Decimal, Field(gt=0, le=1_000_000, allow_inf_nan=False, decimal_places=3)]
    max_uses: Annotated[int, Field(ge=1, le=100_000)]
    max_uses_per_customer: Annotated[int, Field(ge=1, le=1000)] | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    screening_ids: Annotated[list[Id], Field(min_length=1, max_length=100)] | None = None
    ticket_types: Annotated[list[TicketTypeCode], Field(min_length=1, max_length=20)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PromoCodeIn:
        if self.kind == "percent" and self.value > 100:
            raise ValueError("must have a value of at most 100 when kind is percent")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until <= self.valid_from
        ):
            raise ValueError("must have valid_until after valid_from")
        return self


class PromoCodeOut(Model):
    id: int
    code: str
    kind: Literal["percent", "fixed"]
    value: str
    max_uses: int
    max_uses_per_customer: int | None
    uses: int  # held by live bookings now
    valid_from: datetime | None
    valid_until: datetime | None
    screening_ids: list[int] | None
    ticket_types: list[str] | None
    active: bool
    created_at: datetime


class PromoCodeList(RootModel[list[PromoCodeOut]]):
    """A JSON array of promo code objects."""


# --- web app (cinema/api/webapp.py) -------------------------------------------------------
class ClientConfigOut(Model):
    venue_time_zone: str  # IANA name: the pages show start times in it
    payments: bool  # bookings carry a PaymentIntent
    stripe_publishable_key: str | None  # set: pay with Stripe Elements
    test_card_payments: bool  # true: POST /api/bookings/{id}/test-payment/ is on
    hold_ttl_seconds: int
    max_tickets_per_booking: int


class TestPaymentIn(Model):
    """A test card (4242424242424242 pays; 4000000000000341 is declined)."""

    __test__ = False  # not a pytest class
    number: Annotated[str, StringConstraints(pattern=r"^[0-9]{12,19}$")]
    exp_month: Annotated[int, Field(ge=1, le=12)]
    exp_year: Annotated[int, Field(ge=2000, le=2100)]
    cvc: Annotated[str, StringConstraints(pattern=r"^[0-9]{3,4}$")]


class TestPaymentOut(Model):
    __test__ = False
    status: Literal["charged"]


# --- service ----------------------------------------------------------------------------
class HealthOut(Model):
    status: Literal["ok"]


class ReadyOut(Model):
    status: Literal["ready"]
    checks: dict[str, Literal["ok", "unavailable"]]


# --- webhooks ---------------------------------------------------------------------------
class WebhookOut(Model):
    received: Literal[True]
    outcome: str


class ErrorBody(Model):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorOut(Model):
    error: ErrorBody


# --- audit log (admins) -------------------------------------------------------------------
AuditAction = Annotated[
    str, StringConstraints(max_length=81, pattern=r"^[a-z_]{1,40}\.[a-z_]{1,40}$")
]


class AuditQuery(Model):
    booking_id: Id | None = None
    actor_id: Id | None = None
    screening_id: Id | None = None
    since: IsoDatetime | None = None  # ISO 8601 with a UTC offset; entries at or after it
    action: AuditAction | None = None  # e.g. booking.confirmed, ticket.checked_in
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0


class AuditEntryOut(Model):
    id: int
    at: datetime
    actor_id: int | None  # null: the system (the worker) or an anonymous caller
    actor_role: str  # customer, box_office, admin, anonymous, payment_provider, system
    action: str
    booking_id: int | None
    screening_id: int | None
    target: str  # the table changed
    target_id: int | None
    request_id: str | None
    client_address: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditList(RootModel[list[AuditEntryOut]]):
    """A JSON array of audit entries, newest first."""


# --- sales report (admins) ----------------------------------------------------------------
class ReportQuery(Model):
    format: Literal["json", "csv"] = "json"


class Places(Model):
    total: int
    available: int
    held: int  # PENDING holds not lapsed
    sold: int  # tickets of CONFIRMED, COMPLETED and NO_SHOW bookings
    checked_in: int


class ReportBookings(Model):
    by_status: dict[str, int]  # every booking status, 0 included
    cancelled_by_reason: dict[str, int]  # expired, cancelled_by_user, payment_failed, ...


class RevenueLineOut(Model):
    category: str
    ticket_type: str
    tickets: int
    amount: str
    amount_minor: int


class RevenueOut(Model):
    lines: list[RevenueLineOut]  # at unit prices, before promo discounts
    sold_bookings: int
    gross: str
    gross_minor: int
    discounts: str
    discounts_minor: int
    fees: str
    fees_minor: int
    net: str  # gross - discounts + fees: what the sold bookings were charged
    net_minor: int
    # Of the sold bookings' charges, refunded since (partial refunds) or being refunded; a
    # refund the provider failed is not in it (that money is still here, owed).
    refunded: str
    refunded_minor: int
    refund_pending: str  # the part of `refunded` the provider has not confirmed yet
    refund_pending_minor: int
    kept: str  # net - refunded
    kept_minor: int


class PromoLineOut(Model):
    code: str
    bookings: int
    discount: str
    discount_minor: int


class RefundSourceOut(Model):
    count: int
    amount: str
    amount_minor: int


class RefundsOut(Model):
    """Refunds of the screening's bookings, made or pending (failed ones apart)."""

    count: int  # made or pending
    pending: int  # of `count`, not confirmed by the provider yet
    failed: int  # not in `count` or `amount`
    amount: str  # made or pending
    amount_minor: int
    pending_amount: str  # of `amount`, not confirmed by the provider yet
    pending_amount_minor: int
    failed_amount: str  # the provider could not make them: owed to customers, not refunded
    failed_amount_minor: int
    by_source: dict[str, RefundSourceOut]  # staff, customer, screening, late_payment (not failed)


class NoShowsOut(Model):
    bookings: int
    tickets: int


class SalesReportOut(Model):
    """The JSON form; `?format=csv` answers the same figures as text/csv, one row each:
    section, name, detail, count, amount, amount_minor, currency."""

    screening_id: int
    movie_title: str
    starts_at: datetime
    ends_at: datetime
    currency: str
    general_admission: bool
    places: Places
    bookings: ReportBookings
    revenue: RevenueOut
    promo_codes: list[PromoLineOut]
    refunds: RefundsOut
    no_shows: NoShowsOut
