"""The refund email: booking reference, amount refunded, reason. Sent at most once per
refund (a short lease on the refund row keeps two senders apart), once the provider has the
refund (or none was needed). A cancelled screening's refund is told of by the cancellation
notice instead (cinema/tickets/cancel_mail.py), unless it was made after that notice went out."""

from __future__ import annotations

import logging
from datetime import UTC
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

from cinema.money import format_minor
from cinema.refunds.ports import RefundNotice
from cinema.tickets.mailer import SmtpConfig, deliver, send_each

log = logging.getLogger(__name__)


class NoticeStore(Protocol):
    async def claim_notice(self, refund_id: int, lease_seconds: float) -> RefundNotice | None: ...

    async def mark_notified(self, refund_id: int) -> None: ...

    async def release_notice(self, refund_id: int) -> None: ...

    async def unnotified(self, limit: int, min_age_seconds: float) -> list[int]: ...


def render_refund(notice: RefundNotice, sender: str) -> EmailMessage:
    amount = f"{format_minor(notice.amount, notice.currency)} {notice.currency.upper()}"
    paid = f"{format_minor(notice.booking_amount, notice.currency)} {notice.currency.upper()}"
    when = notice.starts_at.astimezone(UTC).strftime("%A %d %B %Y, %H:%M UTC")
    message = EmailMessage()
    message["Subject"] = f"Refund of {amount} for booking {notice.reference}"
    message["From"] = sender
    message["To"] = notice.email
    message["Message-ID"] = make_msgid(domain="cinemacore.example")
    message["X-Booking-Reference"] = notice.reference
    message["X-Refund-Id"] = str(notice.refund_id)
    message.set_content(
        "\n".join(
            [
                f"Booking reference: {notice.reference}",
                f"{notice.movie_title}, {when}",
                "",
                f"Amount refunded: {amount} (of {paid} paid)",
                f"Reason: {notice.reason}",
                "",
                "The refund goes back to the card you paid with; banks take a few days to",
                "show it. The refunded tickets are no longer valid.",
            ]
        )
    )
    return message


class RefundMailer:
    def __init__(
        self,
        store: NoticeStore,
        smtp: SmtpConfig,
        lease_seconds: float = 120.0,
        sweep_after_seconds: float = 5.0,
    ):
        """`sweep_after_seconds`: the sweep leaves a refund this long to its own sender."""
        self._store = store
        self._smtp = smtp
        self._lease = lease_seconds
        self._sweep_after = sweep_after_seconds

    async def send(self, refund_id: int) -> bool:
        """One attempt; True if this call sent it. Raises on SMTP failure (retry)."""
        if not self._smtp.host:
            return False
        notice = await self._store.claim_notice(refund_id, self._lease)
        if notice is None:
            return False
        message = render_refund(notice, self._smtp.sender)
        await deliver(self._smtp, message, lambda: self._store.release_notice(refund_id))
        await self._store.mark_notified(refund_id)
        log.info("refund email for refund %s sent to %s", refund_id, notice.email)
        return True

    async def sweep(self, limit: int = 100) -> int:
        """The worker's backstop: refund emails nobody sent (a sender died, SMTP was down)."""
        if not self._smtp.host:
            return 0
        unnotified = await self._store.unnotified(limit, self._sweep_after)
        return await send_each(unnotified, self.send, "refund email")
