"""The ticket email: plain text, HTML, a QR code of the booking reference and one of each
ticket's door code (segno)."""

from __future__ import annotations

import html
import io
from datetime import UTC
from email.message import EmailMessage
from email.utils import make_msgid

import segno

from cinema.catalogue.model import GA_ROW
from cinema.money import format_minor
from cinema.tickets.model import Ticket


def qr_png(reference: str, scale: int = 8) -> bytes:
    """The booking reference as a QR code, as the box office scans it."""
    buffer = io.BytesIO()
    segno.make(reference, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def _when(ticket: Ticket) -> str:
    return ticket.starts_at.astimezone(UTC).strftime("%A %d %B %Y, %H:%M UTC")


def _seats(ticket: Ticket) -> list[str]:
    if ticket.seats and all(s.row == GA_ROW for s in ticket.seats):
        return [f"General admission x {len(ticket.seats)}"]
    return [f"Row {s.row}, seat {s.number} ({s.category})" for s in ticket.seats]


def _door_codes(ticket: Ticket) -> list[tuple[str, str]]:
    """(label, code) of each ticket that has a door code."""
    return [(f"Row {s.row}, seat {s.number}", s.code) for s in ticket.seats if s.code is not None]


def _door_code_html(images: list[tuple[str, str, str]]) -> str:
    return "".join(
        f"<p><b>{html.escape(label)}</b><br>"
        f'<img src="cid:{cid[1:-1]}" alt="door code of {html.escape(label)}"></p>'
        for label, _, cid in images
    )


def _attach_door_codes(
    html_part: EmailMessage, reference: str, images: list[tuple[str, str, str]]
) -> None:
    for n, (_, code, cid) in enumerate(images, start=1):
        html_part.add_related(
            qr_png(code, scale=6),
            maintype="image",
            subtype="png",
            cid=cid,
            filename=f"{reference}-ticket-{n}.png",
        )


def render_ticket(ticket: Ticket, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"Your tickets for {ticket.movie_title} - booking {ticket.reference}"
    message["From"] = sender
    message["To"] = ticket.email
    message["X-Booking-Reference"] = ticket.reference
    price = f"{format_minor(ticket.amount, ticket.currency)} {ticket.currency.upper()}"
    lines = [
        "Thank you for your booking. Show this email (or its QR code) at the entrance.",
        "",
        f"Movie:     {ticket.movie_title}",
        f"Hall:      {ticket.hall_name}",
        f"Time:      {_when(ticket)}",
        "Seats:     " + "; ".join(_seats(ticket)),
        f"Paid:      {price}",
        f"Reference: {ticket.reference}",
    ]
    codes = _door_codes(ticket)
    if codes:
        lines += ["", "At the door, each ticket's QR code (or its code):"]
        lines += [f"  {label}: {code}" for label, code in codes]
    message.set_content("\n".join(lines) + "\n")

    qr_cid = make_msgid(domain="cinemacore.invalid")
    images = [(label, code, make_msgid(domain="cinemacore.invalid")) for label, code in codes]
    seat_items = "".join(f"<li>{html.escape(s)}</li>" for s in _seats(ticket))
    message.add_alternative(
        "<html><body>"
        f"<h1>{html.escape(ticket.movie_title)}</h1>"
        f"<p><b>Hall:</b> {html.escape(ticket.hall_name)}<br>"
        f"<b>Time:</b> {html.escape(_when(ticket))}<br>"
        f"<b>Paid:</b> {html.escape(price)}<br>"
        f"<b>Reference:</b> <code>{html.escape(ticket.reference)}</code></p>"
        f"<ul>{seat_items}</ul>"
        f'<p><img src="cid:{qr_cid[1:-1]}" alt="QR code of {html.escape(ticket.reference)}"></p>'
        f"{_door_code_html(images)}"
        "</body></html>",
        subtype="html",
    )
    html_part = message.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(
        qr_png(ticket.reference),
        maintype="image",
        subtype="png",
        cid=qr_cid,
        filename=f"{ticket.reference}.png",
    )
    _attach_door_codes(html_part, ticket.reference, images)
    return message
