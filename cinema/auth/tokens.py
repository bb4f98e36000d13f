"""JWT access tokens: HS256 only, signature, expiry and algorithm all checked."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from cinema.auth.errors import InvalidToken
from cinema.auth.model import Role

ALGORITHM = "HS256"
# Verified tokens kept per process: a buyer sends the same token with every request, and
# decoding + HMAC + claim checks cost more than the rest of a losing booking request.
VERIFIED_CACHE_SIZE = 4096
_ROLES = frozenset(r.value for r in Role)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the caller is. `role` is what the token said when it was issued; staff routes
    check the account's current role instead (cinema/auth/roles.py)."""

    user_id: int
    is_staff: bool = False
    role: Role = Role.CUSTOMER


class TokenIssuer:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        # token -> (principal, exp). Only tokens that passed every check get in; the expiry
        # is checked again on each hit, the only check whose answer changes with time.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, principal: Principal) -> str:
        now = int(time.time())
        claims = {
            "sub": str(principal.user_id),
            "staff": principal.is_staff,
            # Principal(id, True), the old form, is an admin.
            "role": (Role.ADMIN if principal.is_staff else principal.role).value,
            "iat": now,
            "exp": now + self.ttl_seconds,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if cached[1] > time.time():
                return cached[0]
            del self._verified[token]  # expired: let PyJWT say so
        principal, exp = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = (principal, exp)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "sub"]},
            )
            user_id = int(claims["sub"])
            exp = float(claims["exp"])
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(_reason(exc)) from None
        staff = claims.get("staff", False)
        role = claims.get("role", Role.ADMIN.value if staff is True else Role.CUSTOMER.value)
        if user_id < 1 or not isinstance(staff, bool) or role not in _ROLES:
            raise InvalidToken("the token is not one of ours: sign in again")
        return Principal(user_id=user_id, is_staff=staff, role=Role(role)), exp


def _reason(exc: Exception) -> str:
    """A short reason for the client; PyJWT's own text names decoder internals."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired: sign in again"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet"
    return "the token is not one of ours: sign in again"
