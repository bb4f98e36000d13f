"""The box office finds bookings: GET /api/admin/bookings/ (filters, pages, newest first) and
GET /api/admin/bookings/{id}/ (customer, tickets, payment, history)."""

from __future__ import annotations

from typing import Any

import pytest

from cinema.auth.model import Role
from tests.client import ApiClient, wait_for
from tests.payment_fixtures import deliver, paid_event, wait_status

FIND = "/api/admin/bookings/"


@pytest.fixture
async def clerk(users: Any) -> str:
    return str(await users.one(role=Role.BOX_OFFICE))


async def email_of(pool: Any, token: str) -> str:
    import jwt

    from tests.conftest import JWT_SECRET

    uid = int(jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["sub"])
    return str(await pool.fetchval("SELECT email FROM users WHERE id = $1", uid))


async def test_filters_combine_and_answer_newest_first(
    api: ApiClient, users: Any, pool: Any, clerk: str
) -> None:
    ann, bob = await users.one(), await users.one()
    first = await api.new_screening()
    second = await api.new_screening()
    made = []
    for token, screening, seat in (
        (ann, first, 0), (ann, second, 0), (bob, first, 1), (ann, first, 2),
    ):  # fmt: skip
        reply = await api.book(token, screening.id, [screening.seat_ids[seat]])
        assert reply.status == 201, reply
        made.append(reply.body)
    cancelled = await api.delete(f"/api/bookings/{made[3]['id']}/", token=ann)
    assert cancelled.status == 200

    ann_email = await email_of(pool, ann)

    async def ids(**query: Any) -> list[int]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        reply = await api.get(f"{FIND}?{qs}", token=clerk)
        assert reply.status == 200, reply
        return [b["id"] for b in reply.body]

    assert await ids(email=ann_email) == [made[3]["id"], made[1]["id"], made[0]["id"]]
    assert await ids(email=ann_email.upper(), screening_id=first.id) == [
        made[3]["id"], made[0]["id"],
    ]  # fmt: skip
    assert await ids(screening_id=first.id, status="PENDING") == [made[2]["id"], made[0]["id"]]
    assert await ids(screening_id=first.id, status="CANCELLED") == [made[3]["id"]]
    assert await ids(reference=made[2]["reference"].lower()) == [made[2]["id"]]
    assert await ids(reference="ZZZZZZZZ") == []
    # Pages: newest first, limit and offset.
    everything = await ids(screening_id=first.id)
    assert everything == [made[3]["id"], made[2]["id"], made[0]["id"]]
    assert await ids(screening_id=first.id, limit=2) == everything[:2]
    assert await ids(screening_id=first.id, limit=2, offset=2) == everything[2:]

    one = (await api.get(f"{FIND}?reference={made[0]['reference']}", token=clerk)).body[0]
    assert one["email"] == ann_email and one["screening_id"] == first.id
    assert one["seat_ids"] == [first.seat_ids[0]]


@pytest.mark.parametrize(
    "query",
    ["status=PAID", "screening_id=0", "screening_id=x", "email=nope", "limit=0", "limit=1000",
     "offset=-1", "reference=toolongreference"],
)  # fmt: skip
async def test_bad_filters_are_400(api: ApiClient, clerk: str, query: str) -> None:
    reply = await api.get(f"{FIND}?{query}", token=clerk)
    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "validation_error"


async def test_customers_cannot_look_bookings_up(api: ApiClient, users: Any) -> None:
    customer = await users.one()
    assert (await api.get(FIND, token=customer)).status == 403
    assert (await api.get(f"{FIND}1/", token=customer)).status == 403
    assert (await api.get(FIND)).status == 401


async def test_an_unknown_booking_is_404(api: ApiClient, clerk: str) -> None:
    reply = await api.get(f"{FIND}987654321/", token=clerk)
    assert reply.status == 404


async def test_one_booking_with_tickets_payment_and_history(
    quiet_api: Any, users: Any, pool: Any
) -> None:
    api = quiet_api.client
    clerk = await users.one(role=Role.BOX_OFFICE)
    owner = await api.new_user()
    screening = await api.new_screening()
    booked = await api.book(owner, screening.id, screening.seat_ids[:2])
    assert booked.status == 201, booked
    assert (await deliver(api, *paid_event(booked.body))).status == 200
    booking = await wait_status(api, owner, booked.body["id"], "CONFIRMED")

    async def ticket_sent() -> bool:  # the email goes out in the background: let it finish
        sql = "SELECT tickets_sent_at IS NOT NULL FROM bookings WHERE id = $1"
        return bool(await pool.fetchval(sql, booking["id"]))

    await wait_for(ticket_sent, what="the ticket email")
    checked = await api.post(
        "/api/admin/checkin/", {"code": booking["tickets"][1]["code"]}, token=clerk
    )
    assert checked.status == 200

    reply = await api.get(f"{FIND}{booking['id']}/", token=clerk)
    assert reply.status == 200, reply
    detail = reply.body
    assert detail["status"] == "CONFIRMED" and detail["email"] == await email_of(pool, owner)
    assert detail["payment"]["status"] == "succeeded"
    assert "client_secret" not in detail["payment"]  # the customer's, not staff's
    assert [t["seat_id"] for t in detail["tickets"]] == screening.seat_ids[:2]
    assert all("code" not in t for t in detail["tickets"])  # codes only for the owner
    assert detail["tickets"][0]["checked_in_at"] is None
    assert detail["tickets"][1]["checked_in_at"] == checked.body["checked_in_at"]
    assert detail["tickets"][0]["row"] == "A" and detail["tickets"][0]["seat"] == 1
    events = [(h["source"], h["event"]) for h in detail["history"]]
    assert events[0] == ("booking", "created")
    assert ("payment", "payment_intent.succeeded") in events
    assert ("booking", "CONFIRMED") in events
    assert events[-1] == ("check_in", "checked_in")
    times = [h["at"] for h in detail["history"]]
    assert times == sorted(times)
    listed = await api.get(f"{FIND}?reference={booking['reference']}", token=clerk)
    assert "client_secret" not in listed.body[0]["payment"]
