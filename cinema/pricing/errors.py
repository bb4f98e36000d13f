"""What can go wrong when pricing a booking (the API maps these to HTTP)."""

from __future__ import annotations

from cinema.errors import DomainError


class PricingError(DomainError):
    code = "pricing_error"


class UnknownTicketType(PricingError):
    """A ticket type the screening does not sell."""

    code = "unknown_ticket_type"

    def __init__(self, ticket_type: str, sold: list[str]) -> None:
        shown = ticket_type if len(ticket_type) <= 32 else ticket_type[:32] + "..."
        super().__init__(f"ticket type {shown!r} is not sold for this screening (sold: {sold})")


class TicketTypeLimit(PricingError):
    """More tickets of one type than its max_per_booking."""

    code = "ticket_type_limit_exceeded"

    def __init__(self, ticket_type: str, limit: int) -> None:
        super().__init__(f"at most {limit} {ticket_type!r} ticket(s) per booking")


class PromoCodeInvalid(PricingError):
    """Unknown, expired, not yet valid, deactivated or not applicable; `reason` says which."""

    code = "promo_code_invalid"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PromoCodeExhausted(PricingError):
    code = "promo_code_exhausted"


class PromoCodeNotFound(PricingError):
    code = "promo_code_not_found"

    def __init__(self, promo_id: int) -> None:
        super().__init__(f"promo code {promo_id} does not exist")


class PromoCodeTaken(PricingError):
    code = "promo_code_taken"

    def __init__(self, code: str) -> None:
        super().__init__(f"a promo code {code!r} already exists")


class PromoUseRefused(Exception):
    """The booking transaction took no use of the code (and wrote nothing); `reason` is
    promo_code_invalid, promo_code_exhausted or promo_code_customer_limit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
