"""Account errors in business terms."""

from __future__ import annotations

from cinema.errors import DomainError


class AuthError(DomainError):
    code = "auth_error"


class EmailTaken(AuthError):
    code = "email_taken"


class BadCredentials(AuthError):
    code = "invalid_credentials"


class InvalidToken(AuthError):
    code = "invalid_token"
