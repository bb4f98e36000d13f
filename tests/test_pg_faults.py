"""PostgreSQL faults, for real: the app's database sessions terminated in the middle of a mixed
storm, payment details that cannot be stored after the booking committed, and valid tokens of
users that do not exist. Each scenario ends with an invariant check read from PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import asyncpg
import pytest

from cinema.auth.tokens import Principal, TokenIssuer
from cinema.booking.identifiers import new_reference
from cinema.booking.model import NewBooking
from cinema.store.bookings import PgBookingStore
from cinema.store.pool import DatabaseUnavailable, GuardedPool
from tests.client import ApiClient, Reply, Screening, wait_for
from tests.conftest import JWT_SECRET

STORM_WORKERS = 32
LAYOUT = {"rows": [{"label": chr(ord("A") + r), "seats": 25} for r in range(8)]}  # 200 seats
ALLOWED = {200, 201, 409, 503}


async def terminate_sessions(database_url: str) -> int:
    """What a failover does to the service: every session on its database is killed."""
    conn = await asyncpg.connect(database_url)
    try:
        killed = await conn.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(killed)
    finally:
        await conn.close()


def is_proper_503(reply: Reply) -> bool:
    return (
        reply.status == 503
        and isinstance(reply.body, dict)
        and reply.body.get("error", {}).get("code") == "service_unavailable"
        and reply.headers.get("Retry-After", "").isdigit()
    )


@dataclass
class Ledger:
    """Every answer the storm got, and what the clients believe they own."""

    replies: list[tuple[str, Reply, float, float]] = field(default_factory=list)  # +took, at
    faults_at: list[float] = field(default_factory=list)
    booked: dict[int, tuple[int, ...]] = field(default_factory=dict)  # 201s: id -> seats
    cancelled: set[int] = field(default_factory=set)  # DELETEs answered 200

    def record(self, what: str, reply: Reply, seconds: float) -> None:
        self.replies.append((what, reply, seconds, time.monotonic()))

    def seconds_to_recover(self) -> float:
        """From the last fault to the last 503 answered after it."""
        last_fault = self.faults_at[-1]
        late = [at for _, r, _, at in self.replies if r.status == 503 and at > last_fault]
        return max(late, default=last_fault) - last_fault

    def improper(self) -> list[tuple[str, Reply]]:
        return [
            (what, r)
            for what, r, _, _ in self.replies
            if r.status not in ALLOWED or (r.status == 503 and not is_proper_503(r))
        ]


class Storm:
    """Many clients at once: bookings (half with an Idempotency-Key; every one retried on a
    503 as it tells them to, so without a key the retry is a new booking), seat-map reads,
    my-bookings reads and cancels."""

    def __init__(self, api: ApiClient, screening: Screening, tokens: list[str]) -> None:
        self.api = api
        self.screening = screening
        self.tokens = tokens
        self.ledger = Ledger()
        self.stop = asyncio.Event()

    async def _timed(self, what: str, call: Any) -> Reply:
        started = time.monotonic()
        reply: Reply = await call
        self.ledger.record(what, reply, time.monotonic() - started)
        return reply

    async def _until_answered(self, what: str, make_call: Any) -> Reply:
        deadline = time.monotonic() + 20
        while True:
            reply = await self._timed(what, make_call())
            if reply.status != 503 or time.monotonic() > deadline:
                return reply
            await asyncio.sleep(0.05)

    async def _book(self, rng: random.Random, token: str, mine: list[int]) -> None:
        seats = sorted(rng.sample(self.screening.seat_ids, rng.choice((1, 1, 2))))
        key = secrets.token_hex(8) if rng.random() < 0.5 else None
        reply = await self._until_answered(
            "POST", lambda: self.api.book(token, self.screening.id, seats, key=key)
        )
        if reply.status == 201:
            self.ledger.booked[reply.body["id"]] = tuple(reply.body["seat_ids"])
            mine.append(reply.body["id"])

    async def _cancel(self, token: str, booking_id: int) -> None:
        reply = await self._until_answered(
            "DELETE", lambda: self.api.delete(f"/api/bookings/{booking_id}/", token=token)
        )
        if reply.status == 200:
            self.ledger.cancelled.add(booking_id)

    async def worker(self, index: int) -> None:
        rng = random.Random(index)
        token = self.tokens[index % len(self.tokens)]
        mine: list[int] = []
        seat_map = f"/api/screenings/{self.screening.id}/seats/"
        while not self.stop.is_set():
            roll = rng.random()
            if roll < 0.4:
                await self._book(rng, token, mine)
            elif roll < 0.7:
                await self._timed("GET", self.api.get(seat_map))
            elif roll < 0.8 or not mine:
                await self._timed("GET", self.api.get("/api/my-bookings/", token=token))
            else:
                await self._cancel(token, mine.pop(rng.randrange(len(mine))))

    async def faults(self, database_url: str, times: int, between: int) -> list[int]:
        """Terminate the sessions `times` times, `between` answers apart, while requests flow;
        stop the storm `between` answers after the last time."""
        killed = []
        for _ in range(times):
            target = len(self.ledger.replies) + between

            async def flowed(target: int = target) -> bool:
                return len(self.ledger.replies) >= target

            await wait_for(flowed, within=60, what=f"{target} answers")
            self.ledger.faults_at.append(time.monotonic())
            killed.append(await terminate_sessions(database_url))
        target = len(self.ledger.replies) + between

        async def after(target: int = target) -> bool:
            return len(self.ledger.replies) >= target

        await wait_for(after, within=60, what="answers after the last fault")
        self.stop.set()
        return killed


async def answers_normally(
    api: ApiClient, screening: Screening, token: str, ledger: Ledger
) -> None:
    """Poll until the service answers normally; then a burst of reads must meet no broken
    connection left in the pool, and every seat the map shows AVAILABLE must be bookable."""

    async def answers() -> bool:
        seat_map = await api.get(f"/api/screenings/{screening.id}/seats/")
        mine = await api.get("/api/my-bookings/", token=token)
        return seat_map.status == mine.status == 200

    await wait_for(answers, within=5, what="normal answers after the faults")
    burst = await asyncio.gather(
        *(api.get(f"/api/screenings/{screening.id}/seats/") for _ in range(60))
    )
    assert Counter(r.status for r in burst) == {200: 60}
    statuses = await api.seat_statuses(screening.id)
    free = [seat for seat, status in statuses.items() if status == "AVAILABLE"]
    replies = await asyncio.gather(*(api.book(token, screening.id, [s]) for s in free))
    assert Counter(r.status for r in replies) == {201: len(free)}, replies
    for reply in replies:
        ledger.booked[reply.body["id"]] = tuple(reply.body["seat_ids"])


async def check_invariants(database_url: str, screening_id: int, ledger: Ledger) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        doubled = await conn.fetch(
            "SELECT seat_id FROM reservations WHERE screening_id = $1 AND status <> 'CANCELLED'"
            " GROUP BY seat_id HAVING count(*) > 1",
            screening_id,
        )
        rows = await conn.fetch(
            "SELECT b.id, b.status,"
            " ARRAY(SELECT r.seat_id FROM reservations r WHERE r.booking_id = b.id"
            "       ORDER BY r.seat_id) AS seats,"
            " ARRAY(SELECT DISTINCT r.status FROM reservations r WHERE r.booking_id = b.id)"
            "   AS reservation_statuses"
            " FROM bookings b WHERE b.screening_id = $1",
            screening_id,
        )
    finally:
        await conn.close()
    assert doubled == []
    by_id = {r["id"]: r for r in rows}
    for row in rows:  # every booking has its reservations, in its own state
        assert row["seats"], row
        assert row["reservation_statuses"] == [row["status"]], row
    for booking_id, seats in ledger.booked.items():  # every 201 matches a live booking
        row = by_id[booking_id]
        assert tuple(row["seats"]) == seats
        expected = "CANCELLED" if booking_id in ledger.cancelled else "PENDING"
        assert row["status"] == expected, (booking_id, row["status"])
    unanswered = {r["id"] for r in rows if r["status"] == "PENDING"} - set(ledger.booked)
    assert unanswered == set()  # ...and every live booking was answered 201


def report(name: str, ledger: Ledger) -> None:
    counts = Counter((what, r.status) for what, r, _, _ in ledger.replies)
    slowest = max((s for _, _, s, _ in ledger.replies), default=0.0)
    print(
        f"\n{name}: {len(ledger.replies)} requests, statuses {dict(sorted(counts.items()))},"
        f" slowest {slowest:.2f} s, last 503 {ledger.seconds_to_recover():.2f} s after the"
        " last fault"
    )


async def test_terminated_sessions_mid_storm_are_503s_and_the_pool_recovers(
    make_api, users, database_url
):
    api = await make_api(db_pool_max=10)
    screening = await api.new_screening(layout=LAYOUT)
    tokens = await users.create(STORM_WORKERS)
    storm = Storm(api, screening, tokens)
    workers = [asyncio.create_task(storm.worker(i)) for i in range(STORM_WORKERS)]
    try:
        killed = await storm.faults(database_url, times=2, between=150)
    finally:
        storm.stop.set()
        await asyncio.gather(*workers)
    assert all(k > 0 for k in killed), killed  # each fault really hit the app's sessions
    report("sessions terminated twice", storm.ledger)
    assert storm.ledger.improper() == []
    assert storm.ledger.seconds_to_recover() < 5
    await answers_normally(api, screening, tokens[0], storm.ledger)
    await check_invariants(database_url, screening.id, storm.ledger)


class StoreLosingItsSession(PgBookingStore):
    """The real store, except that the next `fail_next` payment writes run on a connection whose
    PostgreSQL session is terminated under the statement (what a failover does to it)."""

    fail_next = 0
    intents_seen: ClassVar[list[str]] = []

    async def attach_payment(
        self, booking_id: int, provider: str, intent_id: str, client_secret: str
    ) -> Any:
        type(self).intents_seen.append(intent_id)
        if type(self).fail_next > 0:
            type(self).fail_next -= 1
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return await super().attach_payment(booking_id, provider, intent_id, client_secret)


@pytest.fixture
async def losing_api(monkeypatch, make_pay_api, stripe_fake):
    monkeypatch.setattr("cinema.bootstrap.PgBookingStore", StoreLosingItsSession)
    monkeypatch.setattr(StoreLosingItsSession, "fail_next", 1)
    monkeypatch.setattr(StoreLosingItsSession, "intents_seen", [])
    await stripe_fake.send_webhooks_to("http://127.0.0.1:9/nowhere")
    return (await make_pay_api()).client


async def bookings_of_screening(database_url: str, screening_id: int) -> list[Any]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT b.id, b.status, b.cancel_reason, b.payment_intent_id,"
                " ARRAY(SELECT r.status FROM reservations r WHERE r.booking_id = b.id"
                "       ORDER BY r.seat_id) AS reservations"
                " FROM bookings b WHERE b.screening_id = $1 ORDER BY b.id",
                screening_id,
            )
        )
    finally:
        await conn.close()


async def test_payment_not_stored_with_a_key_is_503_and_the_replay_finishes_it(
    losing_api, users, database_url
):
    screening = await losing_api.new_screening()
    token = await users.one()
    seats = screening.seat_ids[:2]
    first = await losing_api.book(token, screening.id, seats, key="lost-session")
    assert is_proper_503(first), first
    [kept] = await bookings_of_screening(database_url, screening.id)
    assert (kept["status"], kept["payment_intent_id"]) == ("PENDING", None)

    replay = await losing_api.book(token, screening.id, seats, key="lost-session")
    assert replay.status == 201, replay
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.body["id"] == kept["id"]
    assert replay.body["payment"]["payment_intent_id"].startswith("pi_")
    assert replay.body["payment"]["status"] == "requires_payment"
    [stored] = await bookings_of_screening(database_url, screening.id)
    assert stored["status"] == "PENDING"
    assert stored["payment_intent_id"] == replay.body["payment"]["payment_intent_id"]
    assert stored["reservations"] == ["PENDING", "PENDING"]


async def test_payment_not_stored_without_a_key_is_503_and_leaves_nothing_behind(
    losing_api, users, database_url, stripe_fake
):
    screening = await losing_api.new_screening()
    token, other = await users.create(2)
    seats = screening.seat_ids[:2]
    reply = await losing_api.book(token, screening.id, seats)
    assert is_proper_503(reply), reply
    [abandoned] = await bookings_of_screening(database_url, screening.id)
    assert (abandoned["status"], abandoned["cancel_reason"]) == (
        "CANCELLED",
        "payment_provider_unavailable",
    )
    assert abandoned["reservations"] == ["CANCELLED", "CANCELLED"]
    [intent_id] = StoreLosingItsSession.intents_seen
    assert (await stripe_fake.intent(intent_id)).status == "canceled"
    statuses = await losing_api.seat_statuses(screening.id)
    assert [statuses[s] for s in seats] == ["AVAILABLE", "AVAILABLE"]
    again = await losing_api.book(other, screening.id, seats)
    assert again.status == 201, again
    live = [
        b
        for b in await bookings_of_screening(database_url, screening.id)
        if b["status"] != "CANCELLED"
    ]
    assert [b["id"] for b in live] == [again.body["id"]]


class LosesTheFirstAnswer(GuardedPool):
    """The real pool, except that the first block of work that succeeds is reported lost, as
    when the connection breaks after PostgreSQL committed but before its answer arrived."""

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self.lost = False

    def acquire(self) -> Any:
        checkout = super().acquire()
        outer = self

        class Losing:
            async def __aenter__(self) -> Any:
                return await checkout.__aenter__()

            async def __aexit__(self, *exc: Any) -> None:
                await checkout.__aexit__(*exc)
                if exc[0] is None and not outer.lost:
                    outer.lost = True
                    raise DatabaseUnavailable("the answer to COMMIT was lost")

        return Losing()


@pytest.mark.parametrize(("key", "left"), [(None, "CANCELLED"), ("in-doubt", "PENDING")])
async def test_a_commit_whose_answer_was_lost_leaves_no_booking_nobody_can_find(
    api, pool, users, database_url, key, left
):
    screening = await api.new_screening()
    user_id = TokenIssuer(JWT_SECRET, 3600).verify(await users.one()).user_id
    store = PgBookingStore(LosesTheFirstAnswer(pool.raw))
    new = NewBooking(
        reference=new_reference(),
        user_id=user_id,
        screening_id=screening.id,
        hall_id=screening.hall_id,
        seat_ids=tuple(screening.seat_ids[:2]),
        amount=2000,
        currency="usd",
        hold_ttl_seconds=900,
        hold_token=secrets.token_hex(16),
        idempotency_key=key,
    )
    with pytest.raises(DatabaseUnavailable):
        await store.create_booking(new)
    # It did commit. Without a key nobody can ever ask for it: it is ended. With one, the
    # client's retry with that key finds it (the API answers the replay 201).
    [row] = await bookings_of_screening(database_url, screening.id)
    assert row["status"] == left
    assert row["reservations"] == [left, left]
    if left == "CANCELLED":
        assert row["cancel_reason"] == "abandoned"


async def _deleted_user_token(users: Any, database_url: str) -> str:
    token: str = await users.one()
    user_id = TokenIssuer(JWT_SECRET, 3600).verify(token).user_id
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    finally:
        await conn.close()
    return token


async def _never_existed_token(users: Any, database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        unused = int(await conn.fetchval("SELECT coalesce(max(id), 0) + 1000 FROM users"))
    finally:
        await conn.close()
    return TokenIssuer(JWT_SECRET, 3600).issue(Principal(unused, False))


@pytest.mark.parametrize("make_token", [_deleted_user_token, _never_existed_token])
async def test_valid_token_of_a_user_that_does_not_exist_is_401(
    api, users, database_url, make_token
):
    screening = await api.new_screening()
    token = await make_token(users, database_url)
    seat = screening.seat_ids[0]

    reply = await api.book(token, screening.id, [seat])
    assert reply.status == 401, reply
    assert reply.body["error"]["code"] == "invalid_token"
    assert reply.headers.get("WWW-Authenticate") == "Bearer"
    assert await bookings_of_screening(database_url, screening.id) == []
    for path in ("/api/my-bookings/", "/api/bookings/", "/api/bookings/?reference=ABCDEFGH"):
        listed = await api.get(path, token=token)
        assert (listed.status, listed.body["error"]["code"]) == (401, "invalid_token"), path
    # Nobody's booking is anybody's to see: the same 404 as for another user's booking.
    assert (await api.get("/api/bookings/1/", token=token)).status == 404
    # The refused request let its seat claim go: a real user takes the seat at once.
    assert (await api.book(await users.one(), screening.id, [seat])).status == 201
