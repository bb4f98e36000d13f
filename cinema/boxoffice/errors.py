"""Check-in refusals in business terms (the API maps them to 404 / 409)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cinema.errors import DomainError


class TicketNotFound(DomainError):
    """An unknown or forged code: the same answer for both, so a forger learns nothing."""

    code = "not_found"

    def __init__(self) -> None:
        super().__init__("no ticket has this code")


class AlreadyCheckedIn(DomainError):
    code = "already_checked_in"

    def __init__(self, at: datetime, by_id: int | None, by_email: str | None) -> None:
        super().__init__(f"this ticket was checked in at {at.isoformat()}")
        self.details: dict[str, Any] = {
            "checked_in_at": at.isoformat(),
            "checked_in_by": None if by_id is None else {"id": by_id, "email": by_email},
        }


class TicketNotValid(DomainError):
    """`reason`: other_screening, booking_cancelled, booking_refunded, booking_not_confirmed,
    screening_over (the booking is COMPLETED or NO_SHOW)."""

    code = "ticket_not_valid"

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.details: dict[str, Any] = {"reason": reason, **details}
