"""What a ticket email needs, and its at-most-once bookkeeping, in PostgreSQL."""

from __future__ import annotations

from cinema.store.pool import Pool
from cinema.tickets.model import Ticket, TicketSeat

_CLAIM = """
    UPDATE bookings SET tickets_claimed_until = now() + make_interval(secs => $2)
    WHERE id = $1 AND status = 'CONFIRMED' AND tickets_sent_at IS NULL
      AND (tickets_claimed_until IS NULL OR tickets_claimed_until < now())
    RETURNING id
"""

# Confirmed at least $2 s ago (their task had its chance), at most $3 s ago (enabling SMTP
# later does not mail every old confirmed booking).
_UNSENT = """
    SELECT id FROM bookings
    WHERE status = 'CONFIRMED' AND tickets_sent_at IS NULL
      AND (tickets_claimed_until IS NULL OR tickets_claimed_until < now())
      AND updated_at < now() - make_interval(secs => $2)
      AND updated_at > now() - make_interval(secs => $3)
    ORDER BY id LIMIT $1
"""

_TICKET = """
    SELECT b.id, b.reference, b.amount, b.currency, u.email, m.title, h.name AS hall_name,
           s.starts_at
    FROM bookings b
    JOIN users u ON u.id = b.user_id
    JOIN screenings s ON s.id = b.screening_id
    JOIN movies m ON m.id = s.movie_id
    JOIN halls h ON h.id = s.hall_id
    WHERE b.id = $1
"""

_SEATS = """
    SELECT r.id, st.row_label, st.number, st.category
    FROM reservations r JOIN seats st ON st.id = r.seat_id
    WHERE r.booking_id = $1
    ORDER BY st.row_index, st.number
"""


class PgTicketStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def claim(self, booking_id: int, lease_seconds: float) -> Ticket | None:
        async with self._pool.acquire() as conn:
            if await conn.fetchval(_CLAIM, booking_id, float(lease_seconds)) is None:
                return None
            row = await conn.fetchrow(_TICKET, booking_id)
            seats = await conn.fetch(_SEATS, booking_id)
        return Ticket(
            booking_id=row["id"],
            reference=row["reference"],
            email=row["email"],
            movie_title=row["title"],
            hall_name=row["hall_name"],
            starts_at=row["starts_at"],
            seats=tuple(
                TicketSeat(s["row_label"], s["number"], s["category"], s["id"]) for s in seats
            ),
            amount=row["amount"],
            currency=row["currency"],
        )

    async def unsent(self, limit: int, min_age_seconds: float, max_age_seconds: float) -> list[int]:
        rows = await self._pool.fetch(
            _UNSENT, limit, float(min_age_seconds), float(max_age_seconds)
        )
        return [r["id"] for r in rows]

    async def mark_sent(self, booking_id: int) -> None:
        await self._pool.execute(
            "UPDATE bookings SET tickets_sent_at = now(), tickets_claimed_until = NULL"
            " WHERE id = $1",
            booking_id,
        )

    async def release(self, booking_id: int) -> None:
        await self._pool.execute(
            "UPDATE bookings SET tickets_claimed_until = NULL"
            " WHERE id = $1 AND tickets_sent_at IS NULL",
            booking_id,
        )
