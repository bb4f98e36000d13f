"""One error shape for every 4xx/5xx: {"error": {"code", "message", ...}}."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from cinema.auth.errors import AccountNotFound, BadCredentials, EmailTaken, InvalidToken
from cinema.booking.errors import (
    BookingNotCancellable,
    BookingNotFound,
    CustomerLimitReached,
    IdempotencyKeyReused,
    InvalidSelection,
    InvalidWebhook,
    NotGeneralAdmission,
    PaymentProviderUnavailable,
    PaymentsNotConfigured,
    ScreeningNotFound,
    ScreeningStarted,
    SeatsNotInHall,
    SeatsUnavailable,
    SoldOut,
)
from cinema.booking.sandbox import BookingNotPayable, CardDeclined
from cinema.boxoffice.errors import AlreadyCheckedIn, TicketNotFound, TicketNotValid
from cinema.catalogue.errors import InvalidLayout, InvalidScreening, NotFound
from cinema.errors import DomainError
from cinema.pricing.errors import (
    PromoCodeExhausted,
    PromoCodeInvalid,
    PromoCodeNotFound,
    PromoCodeTaken,
    TicketTypeLimit,
    UnknownTicketType,
)
from cinema.refunds.errors import (
    CancelWindowClosed,
    RefundRefused,
    ScreeningCancelled,
    SeatsNotInBooking,
)
from cinema.validation import describe

log = logging.getLogger(__name__)

_STATUS_BY_ERROR: dict[type[Exception], int] = {
    InvalidSelection: 400,
    ScreeningStarted: 400,
    SeatsNotInHall: 400,
    ScreeningNotFound: 404,
    BookingNotFound: 404,
    SeatsUnavailable: 409,
    SoldOut: 409,
    CustomerLimitReached: 409,
    NotGeneralAdmission: 400,
    BookingNotCancellable: 409,
    IdempotencyKeyReused: 422,
    InvalidWebhook: 400,
    PaymentProviderUnavailable: 502,
    PaymentsNotConfigured: 503,
    EmailTaken: 409,
    AccountNotFound: 404,
    TicketNotFound: 404,
    AlreadyCheckedIn: 409,
    TicketNotValid: 409,
    BadCredentials: 401,
    InvalidToken: 401,
    NotFound: 404,
    InvalidLayout: 400,
    InvalidScreening: 400,
    UnknownTicketType: 400,
    TicketTypeLimit: 400,
    PromoCodeInvalid: 422,
    PromoCodeExhausted: 409,
    PromoCodeNotFound: 404,
    PromoCodeTaken: 409,
    RefundRefused: 409,
    SeatsNotInBooking: 422,
    CancelWindowClosed: 409,
    ScreeningCancelled: 409,
    BookingNotPayable: 409,
    CardDeclined: 402,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}

# Errors meaning "a backing service is unreachable" (503, not 500). The composition root adds
# its drivers' own exception types, so this module needs to know none of them.
_UNAVAILABLE: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
# A lost connection is replaced at once; a failover takes a few seconds. Clients that honour
# the header spread their retries instead of hammering the recovering database.
UNAVAILABLE_RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def validation_error(exc: ValidationError) -> ApiError:
    if any(e["type"] == "json_invalid" for e in exc.errors()):
        return ApiError(400, "malformed_json", "the request body is not valid JSON")
    message, details = describe(exc)
    return ApiError(400, "validation_error", message, details=details)


def _domain_response(exc: DomainError) -> web.Response:
    status = next(
        (s for t, s in _STATUS_BY_ERROR.items() if isinstance(exc, t)),
        400,
    )
    extra: dict[str, Any] = dict(getattr(exc, "details", None) or {})
    seat_ids = getattr(exc, "seat_ids", None)
    if seat_ids is not None:
        extra["seat_ids"] = seat_ids
    reason = getattr(exc, "reason", None)
    if reason is not None:
        extra["reason"] = reason
    for name in ("available", "being_booked", "limit"):  # sold_out, customer_limit_reached
        value = getattr(exc, name, None)
        if isinstance(value, int):
            extra[name] = value
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, headers, **extra)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_error_middleware(
    unavailable: tuple[type[BaseException], ...] = (),
) -> Middleware:
    unreachable = _UNAVAILABLE + unavailable

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _answer_errors(request, handler, unreachable)

    return error_middleware


async def _answer_errors(
    request: web.Request, handler: Handler, unavailable: tuple[type[BaseException], ...]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return error_response(exc.status, exc.code, exc.message, headers, **exc.extra)
    except ValidationError as exc:
        api = validation_error(exc)
        return error_response(api.status, api.code, api.message, **api.extra)
    except DomainError as exc:
        return _domain_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(
            exc.status, _CODE_BY_STATUS.get(exc.status, "http_error"), exc.reason, headers
        )
    except unavailable as exc:
        log.error("backing service unavailable on %s %s: %r", request.method, request.path, exc)
        return error_response(
            503,
            "service_unavailable",
            "a backing service is unavailable; try again shortly",
            {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
            retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")
