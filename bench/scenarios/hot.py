"""hot: C clients released at the same instant against one seat; exactly one may win."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson

from bench.common import Api, CpuMeter, cdf_points, percentiles
from bench.onsale_load import _auth, _preconnect, _session, run_children, split
from bench.scenarios.base import PG_IDLE_FLUSH_SECONDS, Arm, RunBase, new_screening, warm


async def hot_client(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    url, clients = spec["url"], spec["clients"]
    body = orjson.dumps({"screening_id": spec["screening_id"], "seat_ids": [spec["seat_id"]]})
    headers = [_auth(t) for t in spec["tokens"]]
    results: list[tuple[int, float, float]] = []
    async with _session(clients) as session:
        await _preconnect(session, url, clients)
        gate = asyncio.Event()

        async def client(h: dict[str, str]) -> None:
            await gate.wait()
            started = time.perf_counter()
            async with session.post(url + "/api/bookings/", data=body, headers=h) as resp:
                await resp.read()
                done = time.perf_counter()
                results.append((resp.status, (done - started) * 1000, done))

        tasks = [asyncio.create_task(client(headers[i % len(headers)])) for i in range(clients)]
        await asyncio.sleep(0)  # every client is parked on the gate
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        released = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
    return {
        "statuses": [r[0] for r in results],
        "latencies": [r[1] for r in results],
        "burst_ms": (max(r[2] for r in results) - released) * 1000 if results else 0.0,
    }


class HotSeat(RunBase):
    def hot(self, arm: Arm) -> dict[str, Any]:
        args = self.args

        async def prepare(api: Api) -> tuple[int, list[int]]:
            screening_id, seats = await new_screening(api, self.fixture, "hot")
            await warm(api, screening_id)
            await api.ok(
                "POST",
                "/api/bookings/",
                {"screening_id": screening_id, "seat_ids": [seats[1]]},
                self.fixture.tokens[0],
                want=201,
            )
            return screening_id, seats

        screening_id, seats = asyncio.run(self._with_api(arm.url, prepare))
        self._settle()
        xact_before = asyncio.run(self.pg.transactions())
        sizes = _parts(args.clients, args.load_procs)
        token_parts = split(self.fixture.tokens, len(sizes))
        jobs = [
            (
                "hot",
                {
                    "url": arm.url,
                    "screening_id": screening_id,
                    "seat_id": seats[0],
                    "clients": size,
                    "tokens": token_parts[i % len(token_parts)],
                },
            )
            for i, size in enumerate(sizes)
        ]
        api_cpu = CpuMeter(arm.api_pids)
        results = [r for _, r in run_children(jobs, on_start=api_cpu.start)]
        api_cpu_s = api_cpu.stop()
        self._settle()
        xact_after = asyncio.run(self.pg.transactions())
        statuses = Counter(s for r in results for s in r["statuses"])
        latencies = [x for r in results for x in r["latencies"]]
        summary = {
            "scenario": "hot",
            "clients": args.clients,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "winners": statuses.get(201, 0),
            "latency_ms": percentiles(latencies),
            "burst_ms": round(max(r["burst_ms"] for r in results), 1),
            "pg_transactions": xact_after - xact_before,
            "pg_transactions_settled": args.stats_settle >= PG_IDLE_FLUSH_SECONDS,
            "api_cpu_s": api_cpu_s,
            "api_cpu_ms_per_request": round(api_cpu_s * 1000 / max(1, args.clients), 3),
            "loadgen_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
            "warmup": "32 seat-map reads, each on a fresh connection, + 1 booking of another seat",
            "check": self._check(arm, "hot", [screening_id]),
            "cdf_ms": cdf_points(latencies),
        }
        if summary["winners"] != 1:
            self.failures.append(f"{arm.label}/hot: {summary['winners']} winners, expected 1")
        return summary


def _parts(total: int, parts: int) -> list[int]:
    """`total` split into at most `parts` non-empty, nearly equal sizes."""
    base, extra = divmod(total, parts)
    sizes = [base + (1 if i < extra else 0) for i in range(parts)]
    return [n for n in sizes if n > 0]
