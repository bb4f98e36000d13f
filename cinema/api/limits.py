"""Rate limits at the HTTP edge, named by the route table's `limit` field: "auth" counts per
client IP (registration, login), "bookings" per user (booking creation). Over the limit: 429
with Retry-After and the standard error body. The counting itself is behind the RateLimiter
port (cinema/ratelimit.py counts in Redis)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web

from cinema.api.errors import ApiError
from cinema.auth.tokens import Principal
from cinema.metrics import RATE_LIMIT_FAILURES, RATE_LIMITED

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Verdict(Protocol):
    @property
    def allowed(self) -> bool: ...
    @property
    def retry_after_seconds(self) -> int: ...
    @property
    def checked(self) -> bool: ...


class Admission(Protocol):
    """A request's count not sent yet (the booking service sends it with the seat claim)."""

    @property
    def decided(self) -> bool: ...
    async def admit(self) -> None: ...


class RateLimiter(Protocol):
    async def hit(self, limit_name: str, subject: str, limit: int) -> Verdict: ...
    def pending(
        self,
        limit_name: str,
        subject: str,
        limit: int,
        judge: Callable[[Verdict], Exception | None],
    ) -> Admission: ...


@dataclass(frozen=True)
class Limits:
    limiter: RateLimiter
    bookings_per_minute: int
    auth_per_minute: int
    trusted_proxies: tuple[Network, ...] = ()


LIMITS = web.AppKey("limits", Limits)
LimitName = Literal["auth", "bookings"]


def parse_networks(text: str) -> tuple[Network, ...]:
    """ "10.0.0.0/8, 127.0.0.1" -> networks; raises ValueError naming a bad entry."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    return tuple(ipaddress.ip_network(p, strict=False) for p in parts)


def _trusted(address: str | None, proxies: Sequence[Network]) -> bool:
    if not address or not proxies:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_ip(request: web.Request, proxies: Sequence[Network]) -> str:
    """The peer address, or, when the peer is a trusted proxy, the nearest untrusted address in
    X-Forwarded-For (walking from the right: entries left of it are the client's own claims)."""
    peer = request.remote or "unknown"
    if not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def client_address(request: web.Request) -> str:
    """The client's address as the rate limits and the audit log see it."""
    limits = request.app.get(LIMITS)
    return client_ip(request, () if limits is None else limits.trusted_proxies)


def _judge(limit_name: str, verdict: Verdict) -> ApiError | None:
    """The 429 for a refused verdict (None to let the request on), counted in the metrics."""
    if not verdict.checked:
        RATE_LIMIT_FAILURES.inc()
        return None
    if verdict.allowed:
        return None
    RATE_LIMITED.labels(limit_name).inc()
    return ApiError(
        429,
        "rate_limited",
        f"too many requests; retry in {verdict.retry_after_seconds} s",
        retry_after=verdict.retry_after_seconds,
        headers={"Retry-After": str(verdict.retry_after_seconds)},
    )


async def enforce(request: web.Request, limit_name: str, subject: str, limit: int) -> None:
    limits = request.app.get(LIMITS)
    if limits is None or limit <= 0:
        return
    refusal = _judge(limit_name, await limits.limiter.hit(limit_name, subject, limit))
    if refusal is not None:
        raise refusal


def _subject(
    limits: Limits, request: web.Request, name: LimitName, principal: Principal | None
) -> tuple[str, int]:
    """Who is counted against limit `name`, and the limit: the caller's IP for "auth", the
    authenticated user for "bookings"."""
    if name == "auth":
        return client_ip(request, limits.trusted_proxies), limits.auth_per_minute
    if principal is None:
        raise RuntimeError("the bookings limit counts per user; the route must need one")
    return str(principal.user_id), limits.bookings_per_minute


async def apply_limit(request: web.Request, name: LimitName, principal: Principal | None) -> None:
    """Count this request against limit `name` now."""
    limits = request.app.get(LIMITS)
    if limits is None:
        return
    await enforce(request, name, *_subject(limits, request, name, principal))


def defer_limit(
    request: web.Request, name: LimitName, principal: Principal | None
) -> Admission | None:
    """This request's count against limit `name`, to be sent later (with the seat claim, in
    one Redis round trip); its `admit` raises the 429. None: no limit applies."""
    limits = request.app.get(LIMITS)
    if limits is None:
        return None
    subject, limit = _subject(limits, request, name, principal)
    if limit <= 0:
        return None
    return limits.limiter.pending(name, subject, limit, lambda v: _judge(name, v))
