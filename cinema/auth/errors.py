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


class UnknownUser(InvalidToken):
    """A correctly signed token for an account that does not exist (deleted, or a database
    reset while the signing key survived): as good as no token at all."""

    def __init__(self, user_id: int) -> None:
        super().__init__("the account this token was issued for does not exist")
        self.user_id = user_id


class AccountNotFound(AuthError):
    code = "user_not_found"

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} does not exist")
        self.user_id = user_id
