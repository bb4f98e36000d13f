"""What a ticket shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class TicketSeat:
    row: str
    number: int
    category: str
    reservation_id: int = 0  # the ticket's row; its door code is signed from it
    code: str | None = None  # the door code (cinema/boxoffice/codes.py), set by the mailer


@dataclass(frozen=True, slots=True)
class Ticket:
    booking_id: int
    reference: str
    email: str
    movie_title: str
    hall_name: str
    starts_at: datetime
    seats: tuple[TicketSeat, ...]
    amount: int  # minor units
    currency: str
