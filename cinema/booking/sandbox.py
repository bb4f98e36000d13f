"""Paying a booking with a typed test card through the server's own Stripe client: for a
checkout that runs offline against a Stripe-compatible local server (localstripe), where no
Stripe.js can collect the card. The composition root builds it only in test mode
(Settings.test_card_payments); in live mode the endpoint answers 404."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cinema.booking.errors import BookingError
from cinema.booking.model import BookingStatus
from cinema.booking.service import BookingService


@dataclass(frozen=True)
class SandboxCard:
    number: str
    exp_month: int
    exp_year: int
    cvc: str


class BookingNotPayable(BookingError):
    code = "booking_not_payable"


class CardDeclined(BookingError):
    code = "card_declined"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the card was declined ({reason}); try another card")
        self.reason = reason


class SandboxGateway(Protocol):
    async def pay_with_card(self, intent_id: str, card: SandboxCard) -> str | None:
        """Attach the card to the intent and confirm it: None when charged, else the
        decline code."""
        ...


class SandboxPayments:
    def __init__(self, bookings: BookingService, gateway: SandboxGateway) -> None:
        self._bookings = bookings
        self._gateway = gateway

    async def pay(self, user_id: int, booking_id: int, card: SandboxCard) -> None:
        """Charge the owner's PENDING booking; the webhook then confirms it as for any
        payment (this never confirms a booking itself)."""
        booking = await self._bookings.booking_for(user_id, booking_id)
        if booking.status is not BookingStatus.PENDING or booking.payment is None:
            status = booking.status.value
            raise BookingNotPayable(f"booking {booking_id} is {status}: nothing to pay")
        if booking.expires_at <= datetime.now(UTC):
            raise BookingNotPayable(f"the hold of booking {booking_id} has expired")
        declined = await self._gateway.pay_with_card(booking.payment.intent_id, card)
        if declined is not None:
            raise CardDeclined(declined)
