"""Refund refusals in business terms (the API maps them to 404 / 409 / 422)."""

from __future__ import annotations

from cinema.errors import DomainError


class RefundRefused(DomainError):
    """The booking cannot be refunded as asked; `code` says why (409)."""

    def __init__(self, code: str, message: str, seat_ids: list[int] | None = None) -> None:
        super().__init__(message)
        self.code = code
        if seat_ids is not None:
            self.seat_ids = seat_ids


class SeatsNotInBooking(DomainError):
    """Seat ids the booking never had (422)."""

    code = "seats_not_in_booking"

    def __init__(self, seat_ids: list[int]) -> None:
        super().__init__(f"seats {seat_ids} are not tickets of this booking")
        self.seat_ids = seat_ids


class CancelWindowClosed(DomainError):
    code = "cancel_window_closed"

    def __init__(self, hours: int) -> None:
        super().__init__(
            f"a paid booking can be cancelled up to {hours} hour(s) before the screening starts"
        )
        self.details = {"reason": "cancel_window_closed", "cancel_hours": hours}


class ScreeningCancelled(DomainError):
    code = "screening_cancelled"

    def __init__(self, screening_id: int) -> None:
        super().__init__(f"screening {screening_id} is cancelled and takes no bookings")


class ScreeningAlreadyStarted(DomainError):
    code = "screening_started"

    def __init__(self, screening_id: int) -> None:
        super().__init__(f"screening {screening_id} has already started")
