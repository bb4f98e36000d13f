"""The route table: one place listing every endpoint, its models and who may call it
(the OpenAPI document is generated from it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from cinema.api import auth, bookings, catalogue, webhooks
from cinema.api import schemas as s

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Literal["public", "user", "staff"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access = "public"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    headers: tuple[tuple[str, Any], ...] = ()  # (request header, type it is validated as)


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/auth/register",
        auth.register,
        "Create a customer account",
        body=s.RegisterIn,
        response=s.UserOut,
        status=201,
        errors=(400, 409),
    ),
    Route(
        "POST",
        "/api/auth/token",
        auth.token,
        "Exchange email and password for a JWT",
        body=s.TokenIn,
        response=s.TokenOut,
        errors=(400, 401),
    ),
    Route(
        "POST",
        "/api/admin/movies/",
        catalogue.create_movie,
        "Add a movie",
        access="staff",
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
        access="staff",
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
        access="staff",
        response=s.HallList,
    ),
    Route(
        "GET",
        r"/api/admin/halls/{id:\d+}/",
        catalogue.get_hall,
        "One hall",
        access="staff",
        response=s.HallOut,
        errors=(404,),
    ),
    Route(
        "POST",
        "/api/admin/screenings/",
        catalogue.create_screening,
        "Schedule a screening",
        access="staff",
        body=s.ScreeningIn,
        response=s.ScreeningOut,
        status=201,
        errors=(400, 404),
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
        "One of my bookings",
        access="user",
        response=s.BookingOut,
        errors=(404,),
    ),
    Route(
        "DELETE",
        r"/api/bookings/{id:\d+}/",
        bookings.cancel_booking,
        "Cancel my PENDING booking",
        access="user",
        response=s.BookingOut,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/api/my-bookings/",
        bookings.my_bookings,
        "My bookings, newest first",
        access="user",
        query=s.PageQuery,
        response=s.BookingList,
    ),
    Route(
        "POST",
        "/api/webhooks/stripe/",
        webhooks.stripe_webhook,
        "Stripe events (signed with Stripe-Signature); confirms or cancels bookings",
        response=s.WebhookOut,
        errors=(400, 502, 503),
    ),
)


def add_routes(app: web.Application, routes: tuple[Route, ...] = ROUTES) -> None:
    """Register each route with and without its trailing slash."""
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        bare = route.path.rstrip("/")
        if bare != route.path:
            app.router.add_route(route.method, bare, route.handler)
