"""The audit log (issue 13, item 6): every booking state change, check-in, role change,
catalogue and promo-code write has its record, written by a trigger in the same transaction
(so neither exists without the other), with who, role, request id and client address;
the application's own connection cannot UPDATE, DELETE or TRUNCATE it; admins read it at
GET /api/admin/audit/ (newest first, filtered, paginated, validated)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from cinema.audit import ACTOR, Actor
from cinema.auth.model import Role
from cinema.store import audit as store_audit
from cinema.store.pool import Pool
from tests.client import ApiClient
from tests.conftest import Users
from tests.payment_fixtures import CARD_OK, deliver, paid_event, wait_status
from tests.refund_helpers import paid_booking, refund_event, refund_object, send
from tests.test_checkin import CONFIRM, check_in, user_id_of

AUDIT = "/api/admin/audit/"


async def entries(api: ApiClient, query: str = "", token: str | None = None) -> list[Any]:
    reply = await api.get(AUDIT + query, token=token or api.staff_token)
    assert reply.status == 200, reply
    assert isinstance(reply.body, list)
    return reply.body


async def test_the_applications_own_connection_cannot_change_or_remove_records(
    pool: Pool, users: Users
) -> None:
    await users.one()  # at least one record: user.created
    before = await pool.fetchval("SELECT count(*) FROM audit_log")
    assert before >= 1
    for statement in (
        "UPDATE audit_log SET actor_role = 'admin'",
        "UPDATE audit_log SET after = NULL WHERE id = (SELECT max(id) FROM audit_log)",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log)",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(statement)
    assert await pool.fetchval("SELECT count(*) FROM audit_log") >= before
    untouched = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE after IS NULL AND action = 'user.created'"
    )
    assert untouched == 0


async def test_a_booking_change_and_its_record_commit_or_fail_together(
    api: ApiClient, users: Users, pool: Pool
) -> None:
    token = await users.one()
    screening = await api.new_screening()
    booked = await api.book(token, screening.id, screening.seat_ids[:1])
    booking_id = booked.body["id"]

    async def records() -> int:
        return int(
            await pool.fetchval("SELECT count(*) FROM audit_log WHERE booking_id = $1", booking_id)
        )

    assert await records() == 1  # booking.created
    # A record that cannot be written (a malformed actor) takes the change down with it.
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            async with conn.transaction():
                await conn.execute('SELECT cinema_audit_as(\'{"actor_id": "x"}\'::jsonb)')
                await conn.execute(CONFIRM, booking_id)
    status = await pool.fetchval("SELECT status FROM bookings WHERE id = $1", booking_id)
    assert (status, await records()) == ("PENDING", 1)
    # A change rolled back takes its record with it.
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(CONFIRM, booking_id)
        assert (
            await conn.fetchval("SELECT count(*) FROM audit_log WHERE booking_id = $1", booking_id)
            == 2
        )
        await transaction.rollback()
    assert await records() == 1
    # Ten cancels at once change the row once: one record of it.
    replies = await asyncio.gather(
        *(api.delete(f"/api/bookings/{booking_id}/", token=token) for _ in range(10))
    )
    assert {r.status for r in replies} == {200}
    actions = await pool.fetch(
        "SELECT action FROM audit_log WHERE booking_id = $1 ORDER BY id", booking_id
    )
    assert [r["action"] for r in actions] == ["booking.created", "booking.cancelled"]
    # Every booking of the screening has as many state records as state changes.
    changed = await pool.fetchval(
        "SELECT count(*) FROM bookings WHERE id = $1 AND status <> 'PENDING'", booking_id
    )
    assert changed == 1


async def test_booking_records_name_the_actor_request_and_address(
    api: ApiClient, users: Users, pool: Pool
) -> None:
    customer = await users.one()
    clerk = await users.one(role=Role.BOX_OFFICE)
    request_id = "req-" + secrets.token_hex(6)
    screening = await api.new_screening()
    booked = await api.post(
        "/api/bookings/",
        {"screening_id": screening.id, "seat_ids": screening.seat_ids[:2]},
        token=customer,
        headers={"X-Request-ID": request_id},
    )
    assert booked.status == 201, booked
    booking_id = booked.body["id"]
    await pool.execute(CONFIRM, booking_id)  # no request behind it: the system's
    owner_view = await api.get(f"/api/bookings/{booking_id}/", token=customer)
    code = owner_view.body["tickets"][0]["code"]
    scan = await check_in(api, clerk, code)
    assert scan.status == 200, scan

    found = await entries(api, f"?booking_id={booking_id}")
    assert [e["action"] for e in found] == [
        "ticket.checked_in",
        "booking.confirmed",
        "booking.created",
    ]
    scanned, confirmed, created = found
    assert (created["actor_id"], created["actor_role"]) == (user_id_of(customer), "customer")
    assert created["request_id"] == request_id
    assert created["client_address"] == "127.0.0.1"
    assert created["before"] is None and created["after"]["status"] == "PENDING"
    assert created["screening_id"] == screening.id and created["target"] == "bookings"
    assert "hold_token" not in created["after"] and "payment_client_secret" not in created["after"]
    assert (confirmed["actor_id"], confirmed["actor_role"]) == (None, "system")
    assert (confirmed["before"]["status"], confirmed["after"]["status"]) == (
        "PENDING",
        "CONFIRMED",
    )
    assert (scanned["actor_id"], scanned["actor_role"]) == (user_id_of(clerk), "box_office")
    assert scanned["before"] == {"checked_in_at": None}
    assert scanned["after"]["seat_id"] == screening.seat_ids[0]
    assert scanned["after"]["checked_in_by"] == user_id_of(clerk)
    assert datetime.fromisoformat(scanned["at"]) >= datetime.fromisoformat(created["at"])
    # The booking's staff view shows them in its history.
    detail = await api.get(f"/api/admin/bookings/{booking_id}/", token=clerk)
    audited = [h for h in detail.body["history"] if h["source"] == "audit"]
    assert [h["event"] for h in audited] == [
        "booking.created",
        "booking.confirmed",
        "ticket.checked_in",
    ]


async def test_staff_actions_are_recorded_with_before_and_after(
    api: ApiClient, users: Users
) -> None:
    admin = api.staff_token
    admin_id = user_id_of(admin)
    someone = await users.one()
    promoted = await api.post(
        f"/api/admin/users/{user_id_of(someone)}/role", {"role": "box_office"}, token=admin
    )
    assert promoted.status == 200, promoted
    code = "AUDIT" + secrets.token_hex(3).upper()
    promo = await api.post(
        "/api/admin/promo-codes/",
        {"code": code, "kind": "percent", "value": "10", "max_uses": 5},
        token=admin,
    )
    assert promo.status == 201, promo
    off = await api.post(f"/api/admin/promo-codes/{promo.body['id']}/deactivate/", token=admin)
    assert off.status == 200, off
    screening = await api.new_screening()

    mine = await entries(api, f"?actor_id={admin_id}&limit=500")
    assert all(e["actor_id"] == admin_id and e["actor_role"] == "admin" for e in mine)
    by_action: dict[str, list[Any]] = {}
    for e in mine:
        by_action.setdefault(e["action"], []).append(e)
    role = next(e for e in by_action["user.role_changed"] if e["target_id"] == user_id_of(someone))
    assert (role["before"], role["after"]["role"]) == ({"role": "customer"}, "box_office")
    created = next(e for e in by_action["promo_code.created"] if e["target_id"] == promo.body["id"])
    assert created["after"]["code"] == code and created["after"]["active"] is True
    updated = next(e for e in by_action["promo_code.updated"] if e["target_id"] == promo.body["id"])
    assert (updated["before"]["active"], updated["after"]["active"]) == (True, False)
    assert any(e["target_id"] == screening.id for e in by_action["screening.created"])
    assert by_action["screening.created"][0]["screening_id"] is not None
    assert {"movie.created", "hall.created"} <= set(by_action)
    # Newest first, and ?action= picks one kind.
    stamps = [(e["at"], e["id"]) for e in mine]
    assert stamps == sorted(stamps, reverse=True)
    only = await entries(api, f"?actor_id={admin_id}&action=promo_code.updated")
    assert [e["target_id"] for e in only][:1] == [promo.body["id"]]


async def test_a_payment_providers_change_and_the_store_helper_are_recorded(
    quiet_api: Any, users: Users, pool: Pool
) -> None:
    api = quiet_api.client
    token = await users.one()
    screening = await api.new_screening()
    booked = await api.book(token, screening.id, screening.seat_ids[:1])
    reply = await deliver(api, *paid_event(booked.body))
    assert reply.body["outcome"] == "confirmed", reply
    found = await entries(api, f"?booking_id={booked.body['id']}&action=booking.confirmed")
    assert [(e["actor_role"], e["actor_id"]) for e in found] == [("payment_provider", None)]
    assert found[0]["request_id"]
    # The explicit helper, for an action that changes no audited row: same actor rules.
    acting = ACTOR.set(Actor(user_id_of(api.staff_token), "admin", "req-explicit", "10.0.0.9"))
    try:
        async with store_audit.audited(pool) as conn:
            await store_audit.record(
                conn, "booking.noted", "bookings", booked.body["id"], booking_id=booked.body["id"]
            )
    finally:
        ACTOR.reset(acting)
    noted = await entries(api, f"?booking_id={booked.body['id']}&action=booking.noted")
    assert [(e["actor_role"], e["request_id"], e["client_address"]) for e in noted] == [
        ("admin", "req-explicit", "10.0.0.9")
    ]


async def test_filters_since_and_pages(api: ApiClient, users: Users) -> None:
    customer = await users.one()
    screening = await api.new_screening()
    ids = []
    for seat in screening.seat_ids[:3]:
        booked = await api.book(customer, screening.id, [seat])
        ids.append(booked.body["id"])
    by_customer = await entries(api, f"?actor_id={user_id_of(customer)}")
    assert [e["booking_id"] for e in by_customer] == ids[::-1]  # newest first
    page = await entries(api, f"?actor_id={user_id_of(customer)}&limit=1&offset=1")
    assert [e["booking_id"] for e in page] == [ids[1]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert await entries(api, f"?actor_id={user_id_of(customer)}&since={future}") == []
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert len(await entries(api, f"?actor_id={user_id_of(customer)}&since={past}")) == 3
    by_screening = await entries(api, f"?screening_id={screening.id}&action=booking.created")
    assert sorted(e["booking_id"] for e in by_screening) == ids


async def test_only_admins_read_it_and_bad_parameters_are_400(api: ApiClient, users: Users) -> None:
    for role in (Role.CUSTOMER, Role.BOX_OFFICE):
        reply = await api.get(AUDIT, token=await users.one(role=role))
        assert reply.status == 403, (role, reply)
        assert reply.body["error"]["code"] == "forbidden"
    assert (await api.get(AUDIT)).status == 401
    for bad in (
        "booking_id=abc",
        "booking_id=0",
        "actor_id=-3",
        "since=yesterday",
        "since=0.5",  # a number is not a date-time here
        "since=1764000000",
        "since=2026-01-01T00:00:00",  # no UTC offset: ambiguous
        "limit=0",
        "limit=501",
        "offset=-1",
        "action=DROP%20TABLE",
    ):
        reply = await api.get(f"{AUDIT}?{bad}", token=api.staff_token)
        assert reply.status == 400, (bad, reply)
        assert reply.body["error"]["code"] == "validation_error", (bad, reply)
    assert (await api.get(f"{AUDIT}?utm_source=x", token=api.staff_token)).status == 200


async def test_refunds_through_the_api_are_recorded_with_who_asked(
    pay_api: Any, stripe_fake: Any, users: Users, pool: Pool
) -> None:
    """A box-office refund, a customer's own cancel (refunded), the provider's answer: each
    with its actor, and the sales report counts them by source."""
    api = pay_api.client
    clerk = await users.one(role=Role.BOX_OFFICE)
    owner, canceller = await users.create(2)
    # Three days ahead: inside CUSTOMER_CANCEL_HOURS' window for the customer's cancel.
    booking, made = await paid_booking(api, stripe_fake, owner, 2, starts_in=timedelta(days=3))
    refunded = await api.post(
        f"/api/admin/bookings/{booking['id']}/refund",
        {"reason": "seat broken", "seat_ids": [made.seat_ids[0]]},
        token=clerk,
        headers={"X-Request-ID": "req-clerk-refund"},
    )
    assert refunded.status == 200, refunded
    [refund] = refunded.body["refunds"]
    mine = await api.book(canceller, made.id, made.seat_ids[2:3])
    assert mine.status == 201, mine
    assert await stripe_fake.pay(mine.body["payment"]["payment_intent_id"], CARD_OK) == "succeeded"
    await wait_status(api, canceller, mine.body["id"], "CONFIRMED")
    cancelled = await api.delete(f"/api/bookings/{mine.body['id']}/", token=canceller)
    assert cancelled.status == 200, cancelled
    event = refund_event(
        "refund.updated",
        refund_object(refund, booking["payment"]["payment_intent_id"], "succeeded"),
    )
    assert (await send(api, event))["outcome"] == "refund_updated"

    staff = await entries(api, f"?booking_id={booking['id']}&action=refund.created")
    assert [(e["actor_id"], e["actor_role"], e["request_id"]) for e in staff] == [
        (user_id_of(clerk), "box_office", "req-clerk-refund")
    ]
    assert staff[0]["after"]["reason"] == "seat broken"
    tickets = await entries(api, f"?booking_id={booking['id']}&action=ticket.refunded")
    assert [e["after"]["seat_id"] for e in tickets] == [made.seat_ids[0]]
    done = await entries(api, f"?booking_id={booking['id']}&action=refund.refunded")
    assert [(e["actor_role"], e["before"]["status"]) for e in done] == [
        ("payment_provider", "pending")
    ]
    own = await entries(api, f"?booking_id={mine.body['id']}&action=refund.created")
    assert [(e["actor_id"], e["actor_role"]) for e in own] == [(user_id_of(canceller), "customer")]
    assert own[0]["after"]["source"] == "customer"

    report = await api.get(f"/api/admin/screenings/{made.id}/report", token=api.staff_token)
    by_source = report.body["refunds"]["by_source"]
    assert by_source["staff"]["amount_minor"] == refund["amount_minor"]
    assert by_source["customer"]["amount_minor"] == mine.body["total_minor"]
    kept = report.body["revenue"]
    assert kept["refunded_minor"] == refund["amount_minor"]
    assert kept["kept_minor"] == booking["total_minor"] - refund["amount_minor"]
    written = await pool.fetchval(
        "SELECT count(*) FROM refunds r JOIN bookings b ON b.id = r.booking_id"
        " WHERE b.screening_id = $1",
        made.id,
    )
    assert report.body["refunds"]["count"] == written == 2
