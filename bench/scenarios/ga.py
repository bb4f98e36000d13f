"""ga: general admission. U users book 1-4 places a request of a capacity-only screening
until PostgreSQL says it is sold out; then every user asks again (the losers' burst, where
the filter's sold-out marker should keep PostgreSQL out). Tickets/s, latency, and the
PostgreSQL transactions per loser, for the sale and for the burst."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from bench.common import Api, CpuMeter, cdf_points, percentiles
from bench.onsale_load import _auth, _preconnect, _session, run_children, split
from bench.scenarios.base import PG_IDLE_FLUSH_SECONDS, Arm, RunBase, warm

MAX_PLACES = 4
BURST_PER_USER = 5  # requests per user after the sell-out


async def ga_client(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    """Buy until a 409 says no place is left (a 409 naming k > 0 left: ask for at most k)."""
    url, screening_id = spec["url"], spec["screening_id"]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    codes: list[int] = []
    tickets = 0
    errors: list[str] = []
    sold_out = False
    async with _session(len(spec["tokens"])) as session:
        await _preconnect(session, url, len(spec["tokens"]))

        async def ask(h: dict[str, str], quantity: int) -> tuple[int, bytes]:
            body = orjson.dumps({"screening_id": screening_id, "quantity": quantity})
            started = time.perf_counter()
            async with session.post(url + "/api/bookings/", data=body, headers=h) as resp:
                raw = await resp.read()
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[resp.status] += 1
            codes.append(resp.status)
            return resp.status, raw

        async def user(token: str) -> None:
            nonlocal tickets, sold_out
            h, most = _auth(token), MAX_PLACES
            while not sold_out and len(errors) < 50:
                quantity = random.randint(1, most)
                status, raw = await ask(h, quantity)
                if status == 201:
                    tickets += quantity
                elif status == 409:
                    error = orjson.loads(raw)["error"]
                    left, busy = error.get("available", 0), error.get("being_booked", 0)
                    if left == 0 and busy == 0:
                        sold_out = True
                    elif left == 0:  # others' unfinished bookings hold the rest: may fail
                        await asyncio.sleep(0.005)
                    most = max(1, min(MAX_PLACES, left))
                else:
                    errors.append(f"{status} {raw[:200]!r}")

        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        started = time.time()
        await asyncio.gather(*(user(t) for t in spec["tokens"]))
        ended = time.time()
    return {
        "statuses": dict(statuses),
        "latencies": latencies,
        "codes": codes,
        "tickets": tickets,
        "errors": errors[:5],
        "started": started,
        "ended": ended,
    }


async def ga_burst_client(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    """After the sell-out: every user asks BURST_PER_USER more times, all at once."""
    url = spec["url"]
    body = orjson.dumps({"screening_id": spec["screening_id"], "quantity": 1})
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    async with _session(len(spec["tokens"])) as session:
        await _preconnect(session, url, len(spec["tokens"]))

        async def user(token: str) -> None:
            # a 201 here is one place (quantity 1): the summary reconciles it with PostgreSQL
            h = _auth(token)
            for _ in range(BURST_PER_USER):
                started = time.perf_counter()
                async with session.post(url + "/api/bookings/", data=body, headers=h) as resp:
                    await resp.read()
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[resp.status] += 1

        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        await asyncio.gather(*(user(t) for t in spec["tokens"]))
    return {"statuses": dict(statuses), "latencies": latencies}


class GeneralAdmission(RunBase):
    def ga(self, arm: Arm) -> dict[str, Any]:
        screening_id = asyncio.run(self._with_api(arm.url, self._ga_screening))
        self._settle()
        xact_before = asyncio.run(self.pg.transactions())
        jobs = self._ga_jobs("ga", arm.url, screening_id)
        api_cpu, pg_cpu = CpuMeter(arm.api_pids), CpuMeter(self._pg_pids)
        sales = [
            r for _, r in run_children(jobs, on_start=lambda: (api_cpu.start(), pg_cpu.start()))
        ]
        api_cpu_s, pg_cpu_s = api_cpu.stop(), pg_cpu.stop()
        self._settle()
        xact_sale = asyncio.run(self.pg.transactions()) - xact_before
        xact_before = asyncio.run(self.pg.transactions())
        burst = [r for _, r in run_children(self._ga_jobs("ga_burst", arm.url, screening_id))]
        self._settle()
        xact_burst = asyncio.run(self.pg.transactions()) - xact_before
        return self._ga_summary(
            arm, screening_id, sales, burst, xact_sale, xact_burst, api_cpu_s, pg_cpu_s
        )

    async def _ga_screening(self, api: Api) -> int:
        screening = await api.ok(
            "POST",
            "/api/admin/screenings/",
            {
                "movie_id": self.fixture.movie_id,
                "capacity": self.args.ga_capacity,
                "starts_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
                "prices": {"general": "20.00"},
                "currency": "eur",
            },
            self.fixture.staff,
            want=201,
        )
        screening_id = int(screening["id"])
        await warm(api, screening_id)
        return screening_id

    def _ga_jobs(self, kind: str, url: str, screening_id: int) -> list[tuple[str, Any]]:
        return [
            (kind, {"url": url, "screening_id": screening_id, "tokens": part})
            for part in split(self.fixture.tokens, self.args.load_procs)
        ]

    def _ga_summary(
        self,
        arm: Arm,
        screening_id: int,
        sales: list[dict[str, Any]],
        burst: list[dict[str, Any]],
        xact_sale: int,
        xact_burst: int,
        api_cpu_s: float,
        pg_cpu_s: float,
    ) -> dict[str, Any]:
        statuses: Counter[int] = Counter()
        for r in sales:
            statuses.update({int(k): v for k, v in r["statuses"].items()})
        burst_statuses: Counter[int] = Counter()
        for r in burst:
            burst_statuses.update({int(k): v for k, v in r["statuses"].items()})
        duration = max(r["ended"] for r in sales) - min(r["started"] for r in sales)
        tickets = sum(r["tickets"] for r in sales)
        bookings, losers = statuses.get(201, 0), statuses.get(409, 0)
        latencies = [x for r in sales for x in r["latencies"]]
        live = asyncio.run(_live_places(self.pg.dsn, screening_id))
        check = self._check(arm, "ga", [screening_id])
        # every 201, of the sale and of the burst (one place each), against PostgreSQL
        answered = tickets + burst_statuses.get(201, 0)
        check["tickets_201_vs_postgres"] = [answered, live]
        if live != answered or live != self.args.ga_capacity:
            self.failures.append(
                f"{arm.label}/ga: {answered} places in 201 answers"
                f" ({burst_statuses.get(201, 0)} in the burst), {live} live,"
                f" capacity {self.args.ga_capacity}"
            )
        burst_requests = sum(burst_statuses.values())
        return {
            "scenario": "ga",
            "users": len(self.fixture.tokens),
            "capacity": self.args.ga_capacity,
            "places_per_request": f"1-{MAX_PLACES}",
            "duration_s": round(duration, 3),
            "tickets": tickets,
            "tickets_per_s": round(tickets / duration, 1),
            "bookings": bookings,
            "requests": sum(statuses.values()),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": [e for r in sales for e in r["errors"]][:5],
            "latency_ms": percentiles(latencies),
            "pg_transactions_sale": xact_sale,
            # every winner costs one; what is left over is the losers' (and a few sweeps')
            "pg_transactions_per_loser_sale": round((xact_sale - bookings) / max(1, losers), 3),
            "burst_requests": burst_requests,
            "burst_statuses": {str(k): v for k, v in sorted(burst_statuses.items())},
            "burst_tickets": burst_statuses.get(201, 0),
            "burst_latency_ms": percentiles([x for r in burst for x in r["latencies"]]),
            "pg_transactions_burst": xact_burst,
            "pg_transactions_per_loser_burst": round(xact_burst / max(1, burst_requests), 3),
            "pg_transactions_settled": self.args.stats_settle >= PG_IDLE_FLUSH_SECONDS,
            "api_cpu_s": api_cpu_s,
            "pg_cpu_s": pg_cpu_s,
            "check": check,
            "cdf_ms": cdf_points(latencies),
        }


async def _live_places(dsn: str, screening_id: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM reservations WHERE screening_id = $1 AND status <> 'CANCELLED'",
            screening_id,
        )
    finally:
        await conn.close()
    return int(value)
