"""Sends one booking's ticket by SMTP, at most once: a short lease in PostgreSQL keeps two
senders apart, and `tickets_sent_at` records that it went out."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
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
        try:
            await aiosmtplib.send(
                render_ticket(self._with_codes(ticket), self._smtp.sender),
                hostname=self._smtp.host,
                port=self._smtp.port,
                timeout=self._smtp.timeout_seconds,
            )
        except BaseException:
            await asyncio.shield(self._store.release(booking_id))
            raise
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
        sent = 0
        for booking_id in await self._store.unsent(limit, self._lease, SWEEP_MAX_AGE_SECONDS):
            try:
                sent += await self.send(booking_id)
            except Exception as exc:
                log.warning("ticket sweep stopped at booking %s: %r", booking_id, exc)
                break
        if sent:
            log.info("ticket sweep sent %d email(s)", sent)
        return sent
