"""Sends one booking's ticket by SMTP, at most once: a short lease in PostgreSQL keeps two
senders apart, and `tickets_sent_at` records that it went out."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from cinema.tickets.model import Ticket
from cinema.tickets.render import render_ticket

log = logging.getLogger(__name__)


class TicketStore(Protocol):
    async def claim(self, booking_id: int, lease_seconds: float) -> Ticket | None:
        """The ticket of a CONFIRMED booking whose email is neither sent nor being sent by
        someone else (their lease passed); None otherwise."""
        ...

    async def unsent(self, limit: int, min_age_seconds: float, max_age_seconds: float) -> list[int]:
        """CONFIRMED bookings (confirmed between `min_age_seconds` and `max_age_seconds`
        ago) whose email is neither sent nor leased: their sender died or their task was
        lost."""
        ...

    async def mark_sent(self, booking_id: int) -> None: ...

    async def release(self, booking_id: int) -> None:
        """Give up the lease after a failed attempt, so the retry need not wait for it."""
        ...


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str  # empty: no email is sent
    port: int
    sender: str
    timeout_seconds: float = 30.0


async def deliver(
    smtp: SmtpConfig, message: EmailMessage, release: Callable[[], Awaitable[None]]
) -> None:
    """Hand one message to the SMTP server; on any failure give the sender's lease back (so
    a retry need not wait for it) and re-raise. The caller marks it sent right after this
    returns: a crash in between is the one way a message goes out twice."""
    try:
        await aiosmtplib.send(
            message, hostname=smtp.host, port=smtp.port, timeout=smtp.timeout_seconds
        )
    except BaseException:
        await asyncio.shield(release())
        raise


async def send_each(ids: Iterable[int], send: Callable[[int], Awaitable[bool]], what: str) -> int:
    """A sweep's loop: send each; stop at the first SMTP failure (the server is likely down)."""
    sent = 0
    for one in ids:
        try:
            sent += await send(one)
        except Exception as exc:
            log.warning("%s sweep stopped at %s: %r", what, one, exc)
            break
    return sent


# The sweep leaves alone bookings confirmed longer ago than this.
SWEEP_MAX_AGE_SECONDS = 24 * 3600.0


class TicketMailer:
    def __init__(
        self,
        store: TicketStore,
        smtp: SmtpConfig,
        lease_seconds: float = 120.0,
        codes: Callable[[int], str] | None = None,
    ):
        """`codes`: a reservation id's door code; each ticket's QR code in the email."""
        self._store = store
        self._smtp = smtp
        self._lease = lease_seconds
        self._codes = codes

    def _with_codes(self, ticket: Ticket) -> Ticket:
        if self._codes is None:
            return ticket
        code = self._codes
        seats = tuple(
            dataclasses.replace(s, code=code(s.reservation_id)) if s.reservation_id else s
            for s in ticket.seats
        )
        return dataclasses.replace(ticket, seats=seats)

    async def send(self, booking_id: int) -> bool:
        """One attempt; True if this call sent the email. Raises on SMTP failure (retry)."""
        if not self._smtp.host:
            log.info("SMTP_HOST is not set: no ticket email for booking %s", booking_id)
            return False
        ticket = await self._store.claim(booking_id, self._lease)
        if ticket is None:
            return False
        message = render_ticket(self._with_codes(ticket), self._smtp.sender)
        await deliver(self._smtp, message, lambda: self._store.release(booking_id))
        await self._store.mark_sent(booking_id)
        log.info("ticket email for booking %s sent to %s", booking_id, ticket.email)
        return True

    async def sweep(self, limit: int = 100) -> int:
        """Send the tickets no one is sending: CONFIRMED bookings whose `tickets_sent_at`
        is empty and whose lease has lapsed (a sender crashed mid-send, a task was lost),
        confirmed at least one lease ago, so a booking's own task (and its first retries)
        go first. Run it periodically; the lease keeps it from doubling a sender at work.
        Stops at the first SMTP failure (the server is likely down). Returns how many it
        sent."""
        if not self._smtp.host:
            return 0
        unsent = await self._store.unsent(limit, self._lease, SWEEP_MAX_AGE_SECONDS)
        sent = await send_each(unsent, self.send, "ticket")
        if sent:
            log.info("ticket sweep sent %d email(s)", sent)
        return sent
