"""JWT access tokens: HS256 only, signature, expiry and algorithm all checked."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from cinema.auth.errors import InvalidToken

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    is_staff: bool


class TokenIssuer:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def issue(self, principal: Principal) -> str:
        now = int(time.time())
        claims = {
            "sub": str(principal.user_id),
            "staff": principal.is_staff,
            "iat": now,
            "exp": now + self.ttl_seconds,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "sub"]},
            )
            user_id = int(claims["sub"])
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc) or "invalid token") from None
        if user_id < 1 or not isinstance(claims.get("staff", False), bool):
            raise InvalidToken("invalid token claims")
        return Principal(user_id=user_id, is_staff=bool(claims.get("staff", False)))
