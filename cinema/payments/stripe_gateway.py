"""PaymentGateway on Stripe Payment Intents (or any server speaking Stripe's API, such as
localstripe, through STRIPE_API_BASE)."""

from __future__ import annotations

import logging
from typing import Any

import stripe

from cinema.booking.errors import InvalidWebhook, PaymentProviderUnavailable
from cinema.booking.model import Booking, PaymentEvent, PaymentEventKind
from cinema.booking.ports import IntentHandle
from cinema.booking.sandbox import SandboxCard
from cinema.money import from_provider_amount, provider_amount
from cinema.payments import refund_events
from cinema.payments.refund_events import REFUND_ID_KEY
from cinema.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300

_KINDS = {
    "payment_intent.succeeded": PaymentEventKind.SUCCEEDED,
    "payment_intent.payment_failed": PaymentEventKind.FAILED,
    "payment_intent.canceled": PaymentEventKind.CANCELED,
}


def _unavailable(action: str, exc: stripe.StripeError) -> PaymentProviderUnavailable:
    status = exc.http_status
    # No answer, throttled or a server error may pass; a refusal (4xx) will not by retrying.
    retryable = (
        isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError)
        or status is None
        or status >= 500
    )
    log.warning("stripe refused to %s (%s, http %s): %s", action, type(exc).__name__, status, exc)
    return PaymentProviderUnavailable(f"the payment provider could not {action}", retryable)


def idempotency_key(kind: str, booking: Booking) -> str:
    # The reference makes the key unique even across databases that reuse booking ids.
    return f"cinemacore-{kind}-{booking.id}-{booking.reference}"


class StripeGateway:
    provider = "stripe"

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        api_base: str = stripe.DEFAULT_API_BASE,
        timeout_seconds: float = 10.0,
        max_network_retries: int = 1,
    ) -> None:
        self._webhook_secret = webhook_secret
        self._http = stripe.AIOHTTPClient(timeout=timeout_seconds)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_intent(self, booking: Booking) -> IntentHandle:
        try:
            intent = await self._client.v1.payment_intents.create_async(
                {
                    "amount": provider_amount(booking.amount, booking.currency),
                    "currency": booking.currency.lower(),
                    "metadata": {"booking_id": str(booking.id), "reference": booking.reference},
                },
                {"idempotency_key": idempotency_key("intent", booking)},
            )
        except stripe.StripeError as exc:
            raise _unavailable("create a payment", exc) from exc
        if not intent.client_secret:
            raise PaymentProviderUnavailable("the payment provider returned no client secret")
        return IntentHandle(intent.id, intent.client_secret)

    async def cancel_intent(self, intent_id: str) -> bool:
        try:
            await self._client.v1.payment_intents.cancel_async(intent_id)
        except stripe.InvalidRequestError as exc:
            # Already canceled, succeeded or unknown: there is nothing left to cancel.
            log.info("payment intent %s not cancelled: %s", intent_id, exc)
            return False
        except stripe.StripeError as exc:
            raise _unavailable("cancel a payment", exc) from exc
        return True

    async def refund(self, booking: Booking) -> str:
        if booking.payment is None:
            raise ValueError(f"booking {booking.id} has no payment to refund")
        try:
            refund = await self._client.v1.refunds.create_async(
                {
                    "payment_intent": booking.payment.intent_id,
                    "metadata": {"booking_id": str(booking.id), "reference": booking.reference},
                },
                {"idempotency_key": idempotency_key("refund", booking)},
            )
        except stripe.StripeError as exc:
            raise _unavailable("refund a payment", exc) from exc
        return refund.id

    async def create_refund(
        self, intent_id: str, amount: int, currency: str, key: str, metadata: dict[str, str]
    ) -> str:
        try:
            refund = await self._client.v1.refunds.create_async(
                {
                    "payment_intent": intent_id,
                    "amount": provider_amount(amount, currency),
                    "metadata": metadata,
                },
                {"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            raise _unavailable("refund a payment", exc) from exc
        return refund.id

    async def find_refund(self, intent_id: str, refund_id: int) -> str | None:
        try:
            listed = await self._client.v1.refunds.list_async(
                {"payment_intent": intent_id, "limit": 100}
            )
        except stripe.StripeError as exc:
            raise _unavailable("list refunds", exc) from exc
        for refund in listed.data:
            if _field(refund, "metadata", REFUND_ID_KEY) == str(refund_id):
                return refund.id
        return None

    async def pay_with_card(self, intent_id: str, card: SandboxCard) -> str | None:
        """Test mode only (SandboxPayments): attach the card, then confirm (localstripe
        cannot confirm with a payment_method argument). None when charged, else why not."""
        try:
            method = await self._client.v1.payment_methods.create_async(
                {
                    "type": "card",
                    "card": {
                        "number": card.number,
                        "exp_month": card.exp_month,
                        "exp_year": card.exp_year,
                        "cvc": card.cvc,
                    },
                }
            )
            await self._client.v1.payment_intents.update_async(
                intent_id, {"payment_method": method.id}
            )
            intent = await self._client.v1.payment_intents.confirm_async(intent_id)
        except stripe.CardError as exc:
            return str(exc.code or "card_declined")
        except stripe.InvalidRequestError as exc:
            return str(exc.user_message or exc.code or "invalid card")
        except stripe.StripeError as exc:
            raise _unavailable("take the payment", exc) from exc
        return None if intent.status in ("succeeded", "processing") else str(intent.status)

    def parse_event(self, payload: bytes, signature: str | None) -> PaymentEvent:
        try:
            event = stripe.Webhook.construct_event(
                payload, signature, self._webhook_secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(f"invalid Stripe-Signature: {exc.user_message or exc}") from None
        except ValueError:  # not UTF-8 or not JSON, though correctly signed
            raise InvalidWebhook("the webhook body is not a Stripe event") from None
        event_id, event_type = _field(event, "id"), _field(event, "type")
        if not isinstance(event_id, str) or not isinstance(event_type, str):
            raise InvalidWebhook("the webhook body is not a Stripe event")
        kind = _KINDS.get(event_type, PaymentEventKind.OTHER)
        if event_type in refund_events.EVENT_TYPES:
            refund = refund_events.parse(event_id, event_type, _field(event, "data", "object"))
            return PaymentEvent(event_id, event_type, kind, refund.intent_id, refund=refund)
        amount, currency = _paid(event)
        return PaymentEvent(event_id, event_type, kind, _intent_id(event, kind), amount, currency)


def _field(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None where a level is missing (Stripe objects are not
    dicts: no .get)."""
    for key in path:
        try:
            obj = obj[key]
        except (KeyError, TypeError, IndexError):
            return None
    return obj


def _intent_id(event: Any, kind: PaymentEventKind) -> str | None:
    if kind is PaymentEventKind.OTHER:
        return None
    value = _field(event, "data", "object", "id")
    return value if isinstance(value, str) else None


def _paid(event: Any) -> tuple[int | None, str | None]:
    """What the intent says was paid: its `amount`, or `amount_received` if that is less (a
    partial capture pays less); None when absent or not an integer."""
    intent = _field(event, "data", "object")
    amounts = [
        value
        for value in (_field(intent, "amount"), _field(intent, "amount_received"))
        if isinstance(value, int) and not isinstance(value, bool)
    ]
    currency = _field(intent, "currency")
    if not isinstance(currency, str):
        return (min(amounts) if amounts else None), None
    # Stripe's minor units back to ISO's, so settlement compares like with like.
    paid = from_provider_amount(min(amounts), currency) if amounts else None
    return paid, currency.upper()


def gateway_from_settings(settings: Settings) -> StripeGateway | None:
    """The configured gateway, or None when no Stripe key is set (bookings carry no payment)."""
    if not settings.payments_enabled:
        return None
    return StripeGateway(
        settings.stripe_secret_key,
        settings.stripe_webhook_secret,
        settings.stripe_api_base,
        settings.stripe_timeout_seconds,
    )
