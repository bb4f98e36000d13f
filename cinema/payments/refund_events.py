"""Stripe's refund events read into RefundEvent: `refund.updated` (and `refund.created`,
`refund.failed`) carry one Refund object; `charge.refunded` a Charge, whose `refunds` list
is there on older API versions only (then its `amount_refunded` says how much is covered).
Our refund id travels in the refund's metadata, so an event that arrives before we stored
Stripe's refund id still finds its row."""

from __future__ import annotations

from typing import Any

from cinema.money import from_provider_amount
from cinema.refunds.model import ProviderRefund, RefundEvent, RefundStatus

REFUND_ID_KEY = "cinemacore_refund_id"
EVENT_TYPES = frozenset({"charge.refunded", "refund.updated", "refund.created", "refund.failed"})

# Stripe's refund statuses: pending, requires_action, succeeded, failed, canceled.
_STATUS = {
    "succeeded": RefundStatus.REFUNDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}


def _get(obj: Any, key: str) -> Any:
    try:
        return obj[key]
    except (KeyError, TypeError, IndexError):
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _refund(obj: Any, currency: str | None) -> ProviderRefund:
    provider_id = _get(obj, "id")
    ours = _get(_get(obj, "metadata"), REFUND_ID_KEY)
    status = _get(obj, "status")
    amount = _int(_get(obj, "amount"))
    return ProviderRefund(
        provider_id if isinstance(provider_id, str) else None,
        int(ours) if isinstance(ours, str) and ours.isdigit() and len(ours) < 19 else None,
        _STATUS.get(status) if isinstance(status, str) else None,
        None if amount is None or currency is None else from_provider_amount(amount, currency),
    )


def parse(event_id: str, event_type: str, obj: Any) -> RefundEvent:
    currency = _get(obj, "currency")
    currency = currency if isinstance(currency, str) else None
    intent = _get(obj, "payment_intent")
    intent_id = intent if isinstance(intent, str) else _get(intent, "id")
    intent_id = intent_id if isinstance(intent_id, str) else None
    if event_type != "charge.refunded":
        return RefundEvent(event_id, event_type, intent_id, (_refund(obj, currency),))
    listed = _get(_get(obj, "refunds"), "data")
    refunds = tuple(_refund(r, currency) for r in listed) if isinstance(listed, list) else ()
    total = _int(_get(obj, "amount_refunded"))
    refunded = None if total is None or currency is None else from_provider_amount(total, currency)
    return RefundEvent(event_id, event_type, intent_id, refunds, refunded)
