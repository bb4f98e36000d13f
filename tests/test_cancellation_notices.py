"""Who a screening cancellation emails, and when (db/015, cinema/store/notices.py), on real
PostgreSQL and a real SMTP sink: every booking the cancellation ended, paid or not, gets one
notice; a paid one only once the provider has its refund (or failed it for good); a booking
cancelled before is not mailed; two senders claiming at once send once; the notice stands in
for the refund email of the refunds it tells of."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from cinema.refunds.model import RefundRequest, RefundSource
from cinema.store.cancellations import PgScreeningStore
from cinema.store.notices import PgNoticeStore
from cinema.store.refunds import PgRefundStore
from cinema.tickets.cancel_mail import CancellationMailer
from cinema.tickets.mailer import SmtpConfig
from tests.client import ApiClient
from tests.payment_fixtures import SmtpSink
from tests.test_checkin import CONFIRM
from tests.test_refund_store import shares_of

END = "SELECT cinema_end_bookings(ARRAY[$1]::bigint[], 'CANCELLED', 'screening_cancelled', true)"


async def _bookings(api: ApiClient, pool: Any, users: Any, sid: int, seats: list[int]) -> Any:
    """An unpaid one, three paid (two at a provider), one its customer cancelled first."""
    owners = await users.create(5)
    made = []
    for i in range(5):
        reply = await api.book(owners[i], sid, [seats[i]])
        assert reply.status == 201, reply
        made.append(reply.body)
    tag = secrets.token_hex(4)
    for i in (1, 2, 3):
        await pool.execute(CONFIRM, made[i]["id"])
    for i in (2, 3):
        await pool.execute(
            "UPDATE bookings SET payment_intent_id = $2 WHERE id = $1",
            made[i]["id"],
            f"pi_{tag}{i}",
        )
    gone = await api.delete(f"/api/bookings/{made[4]['id']}/", token=owners[4])
    assert gone.status == 200, gone
    return made


async def test_each_ended_booking_gets_one_notice_once_its_refund_is_at_the_provider(
    api: ApiClient, users: Any, pool: Any, smtp: SmtpSink
) -> None:
    made_screening = await api.new_screening()
    sid = made_screening.id
    unpaid, no_provider, at_provider, failing, self_cancelled = await _bookings(
        api, pool, users, sid, made_screening.seat_ids
    )
    assert await PgScreeningStore(pool).cancel_screening(sid, "flooded") is not None
    refunds, notices = PgRefundStore(pool), PgNoticeStore(pool)
    await pool.execute(END, unpaid["id"])
    refund_ids = {}
    for b in (no_provider, at_provider, failing):
        why = RefundRequest(b["id"], "flooded", RefundSource.SCREENING, None)
        recorded = await refunds.record(why, shares_of(b), whole=True)
        assert recorded.refused is None and recorded.refund_id is not None
        refund_ids[b["id"]] = recorded.refund_id

    # The two refunds at a provider are not there yet: their notices wait.
    assert await notices.due(sid, 100) == [unpaid["id"], no_provider["id"]]
    await refunds.submitted(refund_ids[at_provider["id"]], f"re_{secrets.token_hex(4)}")
    await refunds.submit_failed(refund_ids[failing["id"]], "card expired", None)
    owed = [unpaid["id"], no_provider["id"], at_provider["id"], failing["id"]]
    assert await notices.due(sid, 100) == owed
    assert set(owed) <= set(await notices.due(None, 10_000))  # the sweep's view
    # The refund email leaves a screening's refund to the notice.
    assert await refunds.claim_notice(refund_ids[at_provider["id"]], 30) is None

    # Two senders at once: one lease.
    claims = await asyncio.gather(*(notices.claim(unpaid["id"], 30) for _ in range(2)))
    assert sorted(c is None for c in claims) == [False, True]
    assert unpaid["id"] not in await notices.due(sid, 100)  # leased
    await notices.release(unpaid["id"])

    mailer = CancellationMailer(notices, SmtpConfig("127.0.0.1", smtp.port, "t@example.com"))
    assert await mailer.send_due(sid) == 4
    assert await mailer.send_due(sid) == 0 and await notices.due(sid, 100) == []

    def notice_text(booking: dict[str, Any]) -> list[str]:
        mails = [m for m in smtp.for_reference(booking["reference"]) if m["X-Cancellation-Notice"]]
        return [m.get_body(("plain",)).get_content() for m in mails]

    assert [("nothing was charged" in t) for t in notice_text(unpaid)] == [True]
    for paid in (no_provider, at_provider):
        [text] = notice_text(paid)
        assert f"We have refunded {paid['total']} USD" in text and "flooded" in text
    [text] = notice_text(failing)
    assert f"We could not refund {failing['total']} USD automatically" in text
    assert "We have refunded" not in text
    assert notice_text(self_cancelled) == []
    # PostgreSQL: sent once each, and the refunds they told of are marked as emailed.
    rows = await pool.fetch(
        "SELECT booking_id, sent_at FROM cancellation_notices WHERE screening_id = $1", sid
    )
    assert sorted(r["booking_id"] for r in rows) == owed
    assert all(r["sent_at"] is not None for r in rows)
    unmarked = await pool.fetchval(
        "SELECT count(*) FROM refunds WHERE id = ANY($1::bigint[]) AND email_sent_at IS NULL",
        [refund_ids[no_provider["id"]], refund_ids[at_provider["id"]]],
    )
    assert unmarked == 0
