"""The email to each customer of a cancelled screening: one per booking the cancellation
ended, saying the screening is cancelled and, where it was paid, what was refunded. It
replaces that refund's own email. At most once, as the other emails: a short lease on the
notice row (db/015) keeps two senders apart and `sent_at` is written right after the SMTP
server accepted it, so a worker killed and restarted mails only those not done. The one gap
left: killed after the server's "250" and before that mark, one customer gets it twice."""

from __future__ import annotations

import logging
from datetime import UTC
from email.message import EmailMessage
from email.utils import make_msgid

from cinema.money import format_minor
from cinema.refunds.ports import CancellationNotice, CancellationNoticeStore
from cinema.tickets.mailer import SmtpConfig, deliver, send_each

log = logging.getLogger(__name__)


def _money(minor: int, currency: str) -> str:
    return f"{format_minor(minor, currency)} {currency.upper()}"


def _payment_lines(notice: CancellationNotice) -> list[str]:
    lines = []
    if notice.refunded:
        lines += [
            f"We have refunded {_money(notice.refunded, notice.currency)} to the card you paid",
            "with; banks take a few days to show it.",
        ]
    if notice.refund_failed:
        lines += [
            f"We could not refund {_money(notice.refund_failed, notice.currency)} automatically;",
            "our box office will contact you to pay it back.",
        ]
    if notice.late_payment_refunded:
        lines.append("The payment that reached us after the cancellation is refunded in full.")
    if not lines:
        lines.append("Your booking was not paid, so nothing was charged.")
    return lines


def render_cancellation(notice: CancellationNotice, sender: str) -> EmailMessage:
    when = notice.starts_at.astimezone(UTC).strftime("%A %d %B %Y, %H:%M UTC")
    message = EmailMessage()
    message["Subject"] = f"Cancelled: {notice.movie_title}, {when} (booking {notice.reference})"
    message["From"] = sender
    message["To"] = notice.email
    message["Message-ID"] = make_msgid(domain="cinemacore.example")
    message["X-Booking-Reference"] = notice.reference
    message["X-Cancellation-Notice"] = str(notice.booking_id)
    body = [
        f"Booking reference: {notice.reference}",
        f"{notice.movie_title}, {when}",
        "",
        "This screening has been cancelled, and your booking with it.",
        f"Reason: {notice.reason}",
        "",
        *_payment_lines(notice),
        "",
        "Your tickets for it are no longer valid.",
    ]
    message.set_content("\n".join(body))
    return message


class CancellationMailer:
    def __init__(
        self, store: CancellationNoticeStore, smtp: SmtpConfig, lease_seconds: float = 120.0
    ) -> None:
        self._store = store
        self._smtp = smtp
        self._lease = lease_seconds

    async def send(self, booking_id: int) -> bool:
        """One attempt; True if this call sent it. Raises on SMTP failure (retry)."""
        if not self._smtp.host:
            return False
        notice = await self._store.claim(booking_id, self._lease)
        if notice is None:
            return False
        message = render_cancellation(notice, self._smtp.sender)
        await deliver(self._smtp, message, lambda: self._store.release(booking_id))
        await self._store.mark_sent(notice)
        log.info("cancellation email for booking %s sent to %s", booking_id, notice.email)
        return True

    async def send_due(self, screening_id: int | None, limit: int = 500) -> int:
        """Every notice due now, of this screening (None: of any cancelled in the last day,
        the worker's backstop for a sender that died, SMTP that was down, or a refund the
        provider took only later, by the refund sweep). Stops at an SMTP failure."""
        if not self._smtp.host:
            return 0
        due = await self._store.due(screening_id, limit)
        return await send_each(due, self.send, "cancellation email")

    async def sweep(self, limit: int = 100) -> int:
        return await self.send_due(None, limit)
