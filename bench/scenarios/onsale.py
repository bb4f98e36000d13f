"""onsale: users book seats that still look free (1 or 1-4 a request) until the hall sells out."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from bench import stages
from bench.common import Api, CpuMeter, cdf_points, log, percentiles
from bench.onsale_load import _auth, _preconnect, _session, run_children, split
from bench.scenarios.base import Arm, new_screening, warm
from bench.scenarios.browse import Browse


class FreeSeats:
    """The seats this process believes are free: O(1) remove and random pick."""

    def __init__(self, seat_ids: Iterable[int]) -> None:
        self.items = list(seat_ids)
        self.index = {s: i for i, s in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def remove(self, seat: int) -> None:
        i = self.index.pop(seat, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def pick(self, count: int) -> list[int]:
        return random.sample(self.items, min(count, len(self.items)))


async def onsale_client(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    url, screening_id, max_seats = spec["url"], spec["screening_id"], spec["max_seats"]
    shared = FreeSeats(spec["seat_ids"])
    own = split(spec["seat_ids"], len(spec["tokens"])) if spec.get("disjoint") else []
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    booked: list[list[int]] = []
    codes: list[int] = []
    errors: list[str] = []
    async with _session(len(spec["tokens"])) as session:
        await _preconnect(session, url, len(spec["tokens"]))

        async def user(token: str, free: FreeSeats) -> None:
            h = _auth(token)
            while free and len(errors) < 50:
                seats = free.pick(random.randint(1, max_seats))
                body = orjson.dumps({"screening_id": screening_id, "seat_ids": seats})
                started = time.perf_counter()
                async with session.post(url + "/api/bookings/", data=body, headers=h) as resp:
                    raw = await resp.read()
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses[resp.status] += 1
                    codes.append(resp.status)
                if resp.status == 201:
                    booked.append(seats)
                    for s in seats:
                        free.remove(s)
                elif resp.status == 409:
                    taken = orjson.loads(raw)["error"].get("seat_ids") or seats
                    for s in taken:
                        free.remove(s)
                else:
                    errors.append(f"{resp.status} {raw[:200]!r}")

        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        started = time.time()
        views = [FreeSeats(part) for part in own] if own else [shared] * len(spec["tokens"])
        await asyncio.gather(*(user(t, v) for t, v in zip(spec["tokens"], views, strict=False)))
        ended = time.time()
    return {
        "statuses": dict(statuses),
        "latencies": latencies,
        "codes": codes,
        "booked": booked,
        "errors": errors[:5],
        "started": started,
        "ended": ended,
    }


def sales_summary(sales: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates, statuses and latencies (overall and by status) of the onsale processes' reports."""
    statuses: Counter[int] = Counter()
    for r in sales:
        statuses.update({int(k): v for k, v in r["statuses"].items()})
    duration = max(r["ended"] for r in sales) - min(r["started"] for r in sales)
    requests = sum(statuses.values())
    seats_booked = sum(len(b) for r in sales for b in r["booked"])
    by_status: dict[int, list[float]] = {code: [] for code in statuses}
    for r in sales:
        for code, latency in zip(r["codes"], r["latencies"], strict=True):
            if code in by_status:
                by_status[code].append(latency)
    return {
        "duration_s": round(duration, 3),
        "requests": requests,
        "requests_per_s": round(requests / duration, 1),
        "bookings": statuses.get(201, 0),
        "bookings_per_s": round(statuses.get(201, 0) / duration, 1),
        "seats_per_s": round(seats_booked / duration, 1),
        "conflicts": statuses.get(409, 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": [e for r in sales for e in r["errors"]][:5],
        "latency_ms": percentiles([x for r in sales for x in r["latencies"]]),
        "latency_ms_by_status": {
            str(code): percentiles(by_status[code]) for code in sorted(by_status)
        },
    }


class Onsale(Browse):
    def onsale(
        self,
        arm: Arm,
        max_seats: int,
        with_browse: bool,
        uncontended: bool = False,
        extra_jobs: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        """Until sold out; `uncontended`: each user books only its own share of the hall."""
        name = "onsale" if max_seats == 1 else f"onsale{max_seats}"
        name = "uncontended" if uncontended else name

        async def prepare(api: Api) -> tuple[int, list[int], int | None]:
            hall = "uncontended" if uncontended else "onsale"
            screening_id, seats = await new_screening(api, self.fixture, hall)
            await warm(api, screening_id)
            browse_id = await self._full_screening(api) if with_browse else None
            return screening_id, seats, browse_id

        screening_id, seats, browse_id = asyncio.run(self._with_api(arm.url, prepare))
        jobs = self._onsale_jobs(arm.url, screening_id, seats, max_seats, browse_id)
        if uncontended:  # each load process, then each user, gets its own seats
            sellers = [spec for kind, spec in jobs if kind == "onsale"]
            for spec, part in zip(sellers, split(seats, len(sellers)), strict=False):
                spec["seat_ids"], spec["disjoint"] = part, True
        jobs += extra_jobs or []  # run beside the sale (the logins scenario's burst)
        api_cpu, pg_cpu = CpuMeter(arm.api_pids), CpuMeter(self._pg_pids)
        stages_before = asyncio.run(stages.scrape(arm.url)) if self.args.stage_timings else None
        results = run_children(
            jobs, stop_after={"onsale"}, on_start=lambda: (api_cpu.start(), pg_cpu.start())
        )
        api_cpu_s, pg_cpu_s = api_cpu.stop(), pg_cpu.stop()
        stage_times = None
        if stages_before is not None:
            stage_times = stages.breakdown(stages_before, asyncio.run(stages.scrape(arm.url)))
            log(f"{arm.label}/{name}\n{stages.table(stage_times)}")
        sales = [r for k, r in results if k == "onsale"]
        counts = asyncio.run(self._with_api(arm.url, lambda api: api.seat_counts(screening_id)))
        summary: dict[str, Any] = {
            "scenario": name,
            "users": len(self.fixture.tokens),
            "seats": len(seats),
            "seats_per_request": f"1-{max_seats}" if max_seats > 1 else "1",
            "sold_out": counts.get("available", -1) == 0,
            **sales_summary(sales),
            "api_cpu_s": api_cpu_s,
            "pg_cpu_s": pg_cpu_s,
            "loadgen_cpu_s": round(sum(r["cpu_s"] for _, r in results), 2),
        }
        if stage_times is not None:
            summary["stages"] = stage_times
        if extra_jobs:
            kinds = {kind for kind, _ in extra_jobs}
            summary["extra_results"] = [r for k, r in results if k in kinds]
        checked = [screening_id] + ([browse_id] if browse_id else [])
        summary["check"] = self._sales_check(arm, name, checked, sales, summary["bookings"])
        summary["cdf_ms"] = cdf_points([x for r in sales for x in r["latencies"]])
        browse = [r for k, r in results if k == "browse"]
        all_requests = summary["requests"] + sum(sum(r["statuses"].values()) for r in browse)
        summary["api_cpu_ms_per_request"] = round(api_cpu_s * 1000 / max(1, all_requests), 3)
        summary["pg_cpu_ms_per_request"] = round(pg_cpu_s * 1000 / max(1, all_requests), 3)
        if browse:
            summary["cpu_note"] = "CPU per request counts the concurrent browse reads too"
            summary["browse"] = self._browse_summary("browse_during_" + name, browse)
        return summary

    def _onsale_jobs(
        self,
        url: str,
        screening_id: int,
        seats: list[int],
        max_seats: int,
        browse_id: int | None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The users split over --load-procs processes, plus one browse process if asked."""
        jobs: list[tuple[str, dict[str, Any]]] = [
            (
                "onsale",
                {
                    "url": url,
                    "screening_id": screening_id,
                    "seat_ids": seats,
                    "tokens": part,
                    "max_seats": max_seats,
                },
            )
            for part in split(self.fixture.tokens, self.args.load_procs)
        ]
        if browse_id is not None:
            jobs.append(
                ("browse", {"url": url, "screening_id": browse_id, "readers": self.args.readers})
            )
        return jobs

    def _sales_check(
        self,
        arm: Arm,
        name: str,
        screening_ids: list[int],
        sales: list[dict[str, Any]],
        bookings: int,
    ) -> dict[str, Any]:
        """PostgreSQL's double-booking check, plus the clients' view: no seat in two 201s,
        and as many live bookings in PostgreSQL as 201 answers."""
        booked = [seat for r in sales for b in r["booked"] for seat in b]
        in_pg = asyncio.run(self.pg.live_bookings(screening_ids[0]))
        check = self._check(arm, name, screening_ids)
        check["seats_in_two_201s"] = len(booked) - len(set(booked))
        check["bookings_201_vs_postgres"] = [bookings, in_pg]
        if check["seats_in_two_201s"] or bookings != in_pg:
            self.failures.append(f"{arm.label}/{name}: client-side check failed: {check}")
        return check
