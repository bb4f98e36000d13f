"""The route table: one place listing every endpoint, its models, who may call it and its rate
limit. It drives the server: `add_routes` wraps each handler so that, before it runs, the
caller is authenticated per `access`, `limit` is enforced, and the query and body are parsed
into their models and handed to the handler as `Inputs` (a handler checks none of these
itself). The OpenAPI document (cinema/api/openapi.py) is generated from the same table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from cinema import stages
from cinema.api import (
    audit,
    auth,
    bookings,
    catalogue,
    desk,
    events,
    promos,
    refunds,
    report,
    users,
    webapp,
    webhooks,
)
from cinema.api import schemas as s
from cinema.api.io import Inputs, authenticate, authenticate_role, read_body, read_query
from cinema.api.limits import Admission, LimitName, apply_limit, client_address, defer_limit
from cinema.audit import ACTOR, Actor
from cinema.auth.model import Role
from cinema.auth.tokens import Principal
from cinema.logs import REQUEST_ID

Handler = Callable[[web.Request, Inputs[Any, Any]], Awaitable[web.StreamResponse]]
# "box_office": box office and admins; "admin": admins only; "staff" is the old name of
# "admin". Both staff levels check the account's current role on every request.
Access = Literal["public", "user", "box_office", "admin", "staff"]
STAFF_ACCESS: dict[str, Role] = {
    "box_office": Role.BOX_OFFICE,
    "admin": Role.ADMIN,
    "staff": Role.ADMIN,
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # served with and without a trailing slash
    handler: Handler
    summary: str
    access: Access = "public"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    headers: tuple[tuple[str, Any], ...] = ()  # (request header, type it is validated as)
    limit: LimitName | None = None  # cinema/api/limits.py: who is counted, against which limit
    # The count is not sent before the handler: the handler passes `Inputs.admission` on, and
    # the booking service sends it with its seat claim (one Redis round trip for both).
    limit_at_claim: bool = False
    name: str = ""  # the OpenAPI operationId, when two routes share a handler
    stream: str = ""  # a text/event-stream response: the description of its events
    actor: str = "anonymous"  # who a public route's changes are recorded as (audit log)
    alternatives: tuple[str, ...] = ()  # other media types of the response (a query picks)

    @property
    def operation_id(self) -> str:
        return self.name or self.handler.__name__


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/auth/register/",
        auth.register,
        "Create a customer account",
        body=s.RegisterIn,
        response=s.UserOut,
        status=201,
        errors=(400, 409),
        limit="auth",
    ),
    Route(
        "POST",
        "/api/auth/token/",
        auth.token,
        "Exchange email and password for a JWT",
        body=s.TokenIn,
        response=s.TokenOut,
        errors=(400, 401),
        limit="auth",
    ),
    Route(
        "POST",
        "/api/admin/movies/",
        catalogue.create_movie,
        "Add a movie",
        access="admin",
        body=s.MovieIn,
        response=s.MovieOut,
        status=201,
        errors=(400,),
    ),
    Route(
        "POST",
        "/api/admin/halls/",
        catalogue.create_hall,
        "Add a hall and its seats",
        access="admin",
        body=s.HallIn,
        response=s.HallOut,
        status=201,
        errors=(400,),
    ),
    Route(
        "GET",
        "/api/admin/halls/",
        catalogue.list_halls,
        "List halls",
        access="admin",
        response=s.HallList,
    ),
    Route(
        "GET",
        r"/api/admin/halls/{id:\d+}/",
        catalogue.get_hall,
        "One hall",
        access="admin",
        response=s.HallOut,
        errors=(404,),
    ),
    Route(
        "POST",
        "/api/admin/screenings/",
        catalogue.create_screening,
        "Schedule a screening",
        access="admin",
        body=s.ScreeningIn,
        response=s.ScreeningOut,
        status=201,
        errors=(400, 404),
    ),
    Route(
        "GET",
        r"/api/admin/screenings/{id:\d+}/report",
        report.screening_report,
        "A screening's sales report: places, bookings by state, revenue by category and"
        " ticket type, fees, promo discounts, refunds, no-shows (?format=csv: text/csv)",
        access="admin",
        query=s.ReportQuery,
        response=s.SalesReportOut,
        errors=(400, 404),
        alternatives=("text/csv",),
    ),
    Route(
        "POST",
        r"/api/admin/users/{id:\d+}/role",
        users.set_role,
        "Give an account its role (customer, box_office, admin); admins only",
        access="admin",
        body=s.RoleIn,
        response=s.UserRoleOut,
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/admin/bookings/",
        desk.find_bookings,
        "Find bookings by reference, customer email, screening, status; newest first",
        access="box_office",
        query=s.AdminBookingsQuery,
        response=s.AdminBookingList,
        errors=(400,),
    ),
    Route(
        "GET",
        r"/api/admin/bookings/{id:\d+}/",
        refunds.booking_detail,
        "One booking with its customer, tickets, payment, refunds and history",
        access="box_office",
        response=s.RefundedBookingOut,
        errors=(404,),
    ),
    # --- refunds (issue 13) ---
    Route(
        "POST",
        r"/api/admin/bookings/{id:\d+}/refund",
        refunds.refund_booking,
        "Refund a paid booking, whole or some seats; frees them at once; one refund per"
        " double click. 409 for a PENDING booking (cancel it instead) or one already refunded",
        access="box_office",
        body=s.RefundIn,
        response=s.RefundedBookingOut,
        errors=(400, 404, 409, 422, 503),
    ),
    Route(
        "POST",
        r"/api/admin/screenings/{id:\d+}/cancel",
        refunds.cancel_screening,
        "Cancel a screening: no new bookings (409), and the worker cancels and refunds every"
        " booking in it and emails each customer",
        access="admin",
        body=s.CancelScreeningIn,
        response=s.CancelScreeningOut,
        status=202,
        errors=(400, 404),
    ),
    Route(
        "POST",
        "/api/admin/checkin/",
        desk.check_in,
        "Check a ticket in at the door by its code (exactly once)",
        access="box_office",
        body=s.CheckInIn,
        response=s.CheckInOut,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/api/admin/audit/",
        audit.audit_log,
        "The audit log: who changed what (bookings, check-ins, roles, catalogue, promo"
        " codes), when, from where, before and after; newest first",
        access="admin",
        query=s.AuditQuery,
        response=s.AuditList,
        errors=(400,),
    ),
    Route(
        "POST",
        "/api/admin/promo-codes/",
        promos.create_promo_code,
        "Create a promo code (and its max_uses uses)",
        access="admin",
        body=s.PromoCodeIn,
        response=s.PromoCodeOut,
        status=201,
        errors=(400, 409),
    ),
    Route(
        "GET",
        "/api/admin/promo-codes/",
        promos.list_promo_codes,
        "List promo codes with their live uses",
        access="admin",
        query=s.PageQuery,
        response=s.PromoCodeList,
        errors=(400,),
    ),
    Route(
        "GET",
        r"/api/admin/promo-codes/{id:\d+}/",
        promos.get_promo_code,
        "One promo code",
        access="admin",
        response=s.PromoCodeOut,
        errors=(404,),
    ),
    Route(
        "POST",
        r"/api/admin/promo-codes/{id:\d+}/deactivate/",
        promos.deactivate_promo_code,
        "Deactivate a promo code: no new booking can use it; live bookings keep theirs",
        access="admin",
        response=s.PromoCodeOut,
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/movies/",
        catalogue.list_movies,
        "List movies",
        query=s.PageQuery,
        response=s.MovieList,
    ),
    Route(
        "GET",
        r"/api/movies/{id:\d+}/",
        catalogue.get_movie,
        "One movie",
        response=s.MovieOut,
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/screenings/",
        catalogue.list_screenings,
        "Upcoming screenings, soonest first",
        query=s.ScreeningsQuery,
        response=s.ScreeningList,
        errors=(400,),
    ),
    Route(
        "GET",
        r"/api/screenings/{id:\d+}/",
        catalogue.get_screening,
        "One screening",
        response=s.ScreeningOut,
        errors=(404,),
    ),
    Route(
        "GET",
        r"/api/screenings/{id:\d+}/seats/",
        catalogue.seat_map,
        "Seat map with live status",
        response=s.SeatMapOut,
        errors=(404,),
    ),
    Route(
        "GET",
        r"/api/screenings/{id:\d+}/events/",
        events.screening_events,
        "Live seat status as Server-Sent Events (text/event-stream)",
        errors=(404, 429),
        stream=events.STREAM_DESCRIPTION,
    ),
    Route(
        "POST",
        "/api/bookings/",
        bookings.create_booking,
        "Hold seats (PENDING booking)",
        access="user",
        body=s.BookingIn,
        response=s.BookingOut,
        status=201,
        errors=(400, 404, 409, 422, 502),
        headers=(("Idempotency-Key", s.IdempotencyKey),),
        limit="bookings",
        limit_at_claim=True,
    ),
    Route(
        "GET",
        "/api/bookings/",
        bookings.list_bookings,
        "My bookings, newest first; ?reference= finds one by its reference",
        access="user",
        query=s.BookingsQuery,
        response=s.BookingList,
        errors=(400,),
    ),
    Route(
        "GET",
        r"/api/bookings/{id:\d+}/",
        bookings.get_booking,
        "One of my bookings, with its tickets (door codes and QR codes once CONFIRMED)",
        access="user",
        response=s.OwnerBookingOut,
        errors=(404,),
    ),
    Route(
        "DELETE",
        r"/api/bookings/{id:\d+}/",
        refunds.cancel_my_booking,
        "Cancel my booking: a PENDING one at once; a CONFIRMED one is refunded in full up to"
        " CUSTOMER_CANCEL_HOURS before the start (later 409 cancel_window_closed)",
        access="user",
        response=s.BookingOut,
        errors=(404, 409),
        name="cancel_booking",
    ),
    Route(
        "GET",
        "/api/my-bookings/",
        bookings.list_bookings,
        "My bookings, newest first (the same as GET /api/bookings/)",
        access="user",
        query=s.BookingsQuery,
        response=s.BookingList,
        errors=(400,),
        name="my_bookings",
    ),
    # --- the web app's public additions (cinema/api/webapp.py) ---
    Route(
        "GET",
        "/api/config/",
        webapp.get_config,
        "What a client needs: venue time zone, how to pay (Stripe key or test cards), limits",
        response=s.ClientConfigOut,
    ),
    Route(
        "GET",
        r"/api/halls/{id:\d+}/",
        catalogue.get_hall,
        "A hall and its layout (rows, seat numbers, gaps for aisles, categories)",
        response=s.HallOut,
        errors=(404,),
        name="public_hall",
    ),
    Route(
        "POST",
        r"/api/bookings/{id:\d+}/test-payment/",
        webapp.test_payment,
        "Test mode only (a local Stripe server): pay my PENDING booking with a test card",
        access="user",
        body=s.TestPaymentIn,
        response=s.TestPaymentOut,
        status=202,
        errors=(400, 402, 404, 409, 502),
        limit="bookings",
    ),
    Route(
        "POST",
        "/api/webhooks/stripe/",
        webhooks.stripe_webhook,
        "Stripe events (signed with Stripe-Signature); confirms or cancels bookings",
        response=s.WebhookOut,
        errors=(400, 502, 503),
        actor="payment_provider",
    ),
)


def serve(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler for `route`: its access, limit, query and body, then its handler."""

    async def handle(request: web.Request) -> web.StreamResponse:
        lap = stages.lap_timer()  # None unless STAGE_TIMINGS=1
        principal = None
        if route.access == "user":
            principal = authenticate(request)
        elif route.access in STAFF_ACCESS:
            principal = await authenticate_role(request, STAFF_ACCESS[route.access])
        if lap:
            lap("api.jwt")
        admission = None
        if route.limit is not None and route.limit_at_claim:
            admission = defer_limit(request, route.limit, principal)
        elif route.limit is not None:
            await apply_limit(request, route.limit, principal)
        if lap and route.limit is not None:
            lap("api.rate_limit")
        try:
            return await _inputs_and_handler(request, route, principal, admission, lap)
        except Exception:
            if admission is not None:
                # Refused before its count was sent (a bad body, an unknown screening):
                # an over-limit caller is told 429 first, as when the limit came first.
                await admission.admit()
            raise

    handle.__name__ = route.handler.__name__
    return handle


async def _inputs_and_handler(
    request: web.Request,
    route: Route,
    principal: Principal | None,
    admission: Admission | None,
    lap: stages.Lap | None,
) -> web.StreamResponse:
    query = None if route.query is None else read_query(request, route.query)
    body = None if route.body is None else await read_body(request, route.body)
    if lap:
        lap("api.validation")
    acting = ACTOR.set(_actor(request, route, principal))
    try:
        return await route.handler(request, Inputs(body, query, principal, admission))
    finally:
        ACTOR.reset(acting)
        if lap:
            lap("api.handler")  # a 409 leaves as an exception: it counts too


def _actor(request: web.Request, route: Route, principal: Principal | None) -> Actor:
    """Who this request's changes are recorded as in the audit log (cinema/audit.py)."""
    return Actor(
        None if principal is None else principal.user_id,
        route.actor if principal is None else principal.role.value,
        REQUEST_ID.get(),
        client_address(request),
    )


def add_routes(app: web.Application, routes: tuple[Route, ...] = ROUTES) -> None:
    """Register each route with and without a trailing slash (whichever the table spells);
    every GET also answers HEAD (RFC 9110: HEAD wherever GET is served; aiohttp sends the
    headers without the body)."""
    for route in routes:
        handler = serve(route)
        bare = route.path.rstrip("/")
        for path in (bare, bare + "/"):
            if route.method == "GET":
                app.router.add_get(path, handler, allow_head=True)
            else:
                app.router.add_route(route.method, path, handler)
