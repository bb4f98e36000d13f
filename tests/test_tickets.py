"""The ticket email: rendered with its QR code, sent at most once, retried after SMTP fails."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from cinema.store.pool import create_pool
from cinema.store.tickets import PgTicketStore
from cinema.tickets.mailer import SmtpConfig, TicketMailer
from cinema.tickets.model import Ticket, TicketSeat
from cinema.tickets.render import qr_png, render_ticket
from tests.payment_fixtures import free_port


def test_render_has_every_detail_and_the_qr_code():
    ticket = Ticket(
        booking_id=1,
        reference="ABCD2345",
        email="fan@example.com",
        movie_title="Metropolis <1927>",
        hall_name="Hall 1",
        starts_at=datetime(2030, 5, 17, 19, 30, tzinfo=UTC),
        seats=(TicketSeat("C", 7, "vip"), TicketSeat("C", 8, "vip")),
        amount=3000,
        currency="eur",
    )
    message = render_ticket(ticket, "CinemaCore <tickets@example.com>")
    assert message["To"] == "fan@example.com"
    assert "ABCD2345" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    for expected in (
        "Metropolis <1927>",
        "Hall 1",
        "Friday 17 May 2030, 19:30 UTC",
        "Row C, seat 7 (vip)",
        "Row C, seat 8 (vip)",
        "30.00 EUR",
        "ABCD2345",
    ):
        assert expected in text
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Metropolis &lt;1927&gt;" in html  # escaped
    (image,) = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert image.get_content() == qr_png("ABCD2345")
    assert image["Content-ID"].strip("<>") in html
    assert qr_png("ABCD2345").startswith(b"\x89PNG")


@pytest.fixture
async def confirmed_booking(api, users, database_url):
    screening = await api.new_screening()
    token = await users.one()
    booking = (await api.book(token, screening.id, screening.seat_ids[:1])).body
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE bookings SET status = 'CONFIRMED' WHERE id = $1", booking["id"])
    finally:
        await conn.close()
    return booking


async def test_sent_once_even_when_asked_twice(confirmed_booking, database_url, smtp):
    pool = await create_pool(database_url, 1, 4)
    try:
        mailer = TicketMailer(PgTicketStore(pool), SmtpConfig("127.0.0.1", smtp.port, "t@x.y"))
        assert await mailer.send(confirmed_booking["id"]) is True
        assert await mailer.send(confirmed_booking["id"]) is False
        assert len(smtp.for_reference(confirmed_booking["reference"])) == 1
    finally:
        await pool.close()


async def test_smtp_failure_releases_the_claim_for_the_retry(confirmed_booking, database_url, smtp):
    pool = await create_pool(database_url, 1, 4)
    try:
        store = PgTicketStore(pool)
        down = TicketMailer(store, SmtpConfig("127.0.0.1", free_port(), "t@x.y", 2))
        with pytest.raises(OSError):
            await down.send(confirmed_booking["id"])
        up = TicketMailer(store, SmtpConfig("127.0.0.1", smtp.port, "t@x.y"))
        assert await up.send(confirmed_booking["id"]) is True
        assert len(smtp.for_reference(confirmed_booking["reference"])) == 1
    finally:
        await pool.close()


async def test_pending_booking_gets_no_ticket(api, users, database_url, smtp):
    screening = await api.new_screening()
    booking = (await api.book(await users.one(), screening.id, screening.seat_ids[:1])).body
    pool = await create_pool(database_url, 1, 2)
    try:
        mailer = TicketMailer(PgTicketStore(pool), SmtpConfig("127.0.0.1", smtp.port, "t@x.y"))
        assert await mailer.send(booking["id"]) is False
    finally:
        await pool.close()


def test_each_ticket_with_a_door_code_gets_its_own_qr_code():
    from cinema.boxoffice.codes import TicketCodes

    codes = TicketCodes(b"k" * 32)
    ticket = Ticket(
        booking_id=1,
        reference="ABCD2345",
        email="fan@example.com",
        movie_title="M",
        hall_name="Hall 1",
        starts_at=datetime(2030, 5, 17, 19, 30, tzinfo=UTC),
        seats=(
            TicketSeat("C", 7, "vip", 11, codes.code(11)),
            TicketSeat("C", 8, "vip", 12, codes.code(12)),
        ),
        amount=3000,
        currency="eur",
    )
    message = render_ticket(ticket, "CinemaCore <tickets@example.com>")
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert f"Row C, seat 7: {codes.code(11)}" in text
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert [i.get_content() for i in images] == [
        qr_png("ABCD2345"), qr_png(codes.code(11), scale=6), qr_png(codes.code(12), scale=6),
    ]  # fmt: skip
    html = message.get_body(preferencelist=("html",)).get_content()
    assert all(i["Content-ID"].strip("<>") in html for i in images)
