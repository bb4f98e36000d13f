"""What can go wrong when booking, in business terms (the API maps these to HTTP)."""

from __future__ import annotations

from cinema.errors import DomainError


class BookingError(DomainError):
    code = "booking_error"


class InvalidSelection(BookingError):
    code = "invalid_seat_selection"


class ScreeningNotFound(BookingError):
    code = "screening_not_found"

    def __init__(self, screening_id: int) -> None:
        super().__init__(f"screening {screening_id} does not exist")


class ScreeningStarted(BookingError):
    code = "screening_started"

    def __init__(self, screening_id: int) -> None:
        super().__init__(f"screening {screening_id} has already started")


class SeatsNotInHall(BookingError):
    code = "seats_not_in_hall"

    def __init__(self, seat_ids: list[int]) -> None:
        super().__init__(f"seats {seat_ids} are not seats of this screening's hall")
        self.seat_ids = seat_ids


class SeatsUnavailable(BookingError):
    code = "seats_unavailable"

    def __init__(self, seat_ids: list[int]) -> None:
        super().__init__(f"seats {seat_ids} are already taken")
        self.seat_ids = seat_ids


class BookingNotFound(BookingError):
    code = "booking_not_found"

    def __init__(self, booking_id: int) -> None:
        super().__init__(f"booking {booking_id} does not exist")


class BookingNotCancellable(BookingError):
    code = "booking_not_cancellable"


class IdempotencyKeyReused(BookingError):
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used for a different booking request")


class PaymentProviderUnavailable(BookingError):
    """The payment provider could not be reached or refused; `retryable` says whether trying
    the same call again later may help."""

    code = "payment_provider_unavailable"

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class PaymentsNotConfigured(BookingError):
    code = "payments_not_configured"

    def __init__(self) -> None:
        super().__init__("payments are not configured on this server")


class InvalidWebhook(BookingError):
    """A webhook whose signature is missing, wrong or too old, or whose body is not an event."""

    code = "invalid_webhook"


class ReferenceTaken(Exception):
    """The random booking reference collided with an existing one; try another."""


class IdempotencyKeyTaken(Exception):
    """Another request with the same Idempotency-Key committed first."""


class SoldOut(BookingError):
    """Fewer general-admission places are free than the booking asks for."""

    code = "sold_out"

    def __init__(self, available: int, being_booked: int = 0, certain: bool = True) -> None:
        """`available`: places free for the taking; `being_booked`: places other buyers'
        unfinished bookings hold, which may yet come free. `certain` is false when nobody
        counted (the figure must not be remembered as how many are left)."""
        wanted = "no places are left" if available == 0 else f"only {available} places are left"
        if being_booked:
            free = "" if available == 0 else f"only {available} free and "
            last = (
                f"the last {being_booked} places are" if being_booked > 1 else "the last place is"
            )
            wanted = f"{free}{last} being booked by other buyers; try again in a moment"
            super().__init__(f"sold out for now: {wanted}")
        else:
            super().__init__(f"sold out: {wanted}")
        self.available = available
        self.being_booked = being_booked
        self.certain = certain and being_booked == 0


class CustomerLimitReached(BookingError):
    """The booking would give the customer more tickets of the screening than it allows."""

    code = "customer_limit_reached"

    def __init__(self, limit: int, available: int) -> None:
        super().__init__(
            f"at most {limit} tickets per customer for this screening;"
            f" you may book {available} more"
        )
        self.limit = limit
        self.available = available


class NotGeneralAdmission(BookingError):
    """The request's form does not fit the screening: places of a seated one, seats of a
    general-admission one."""

    code = "validation_error"
