"""The payment state machine as a plain function: states only move forward."""

import pytest

from cinema.booking.model import BookingStatus, PaymentEventKind, PaymentStatus
from cinema.booking.rules import SettleAction, settle_action

P, C, X = BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.CANCELLED
OK, FAIL, CANCEL, OTHER = (
    PaymentEventKind.SUCCEEDED,
    PaymentEventKind.FAILED,
    PaymentEventKind.CANCELED,
    PaymentEventKind.OTHER,
)


@pytest.mark.parametrize(
    ("status", "payment", "kind", "action"),
    [
        (P, PaymentStatus.REQUIRES_PAYMENT, OK, SettleAction.CONFIRM),
        (P, PaymentStatus.REQUIRES_PAYMENT, FAIL, SettleAction.CANCEL),
        (P, PaymentStatus.REQUIRES_PAYMENT, CANCEL, SettleAction.CANCEL),
        (P, PaymentStatus.REQUIRES_PAYMENT, OTHER, SettleAction.IGNORE),
        # a success is final: nothing after it changes the booking
        (C, PaymentStatus.SUCCEEDED, OK, SettleAction.IGNORE),
        (C, PaymentStatus.SUCCEEDED, FAIL, SettleAction.IGNORE),
        (C, PaymentStatus.SUCCEEDED, CANCEL, SettleAction.IGNORE),
        # ended unpaid, then paid after all: take the seats back if they are free
        (X, PaymentStatus.REQUIRES_PAYMENT, OK, SettleAction.RECLAIM),
        (X, PaymentStatus.FAILED, OK, SettleAction.RECLAIM),
        (X, PaymentStatus.CANCELED, OK, SettleAction.RECLAIM),
        (X, None, OK, SettleAction.RECLAIM),
        # ...but never refund or reclaim twice
        (X, PaymentStatus.REFUND_PENDING, OK, SettleAction.IGNORE),
        (X, PaymentStatus.REFUNDED, OK, SettleAction.IGNORE),
        (X, PaymentStatus.FAILED, FAIL, SettleAction.IGNORE),
        (X, PaymentStatus.REQUIRES_PAYMENT, CANCEL, SettleAction.IGNORE),
    ],
)
def test_settle_action(status, payment, kind, action):
    assert settle_action(status, payment, kind) is action
