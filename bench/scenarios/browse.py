"""browse: readers of the seat map of a full screening (alone, or during onsale4)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from bench.common import Api, CpuMeter, cdf_points, percentiles
from bench.onsale_load import _preconnect, _session, run_children, split
from bench.scenarios.base import MAX_SEATS_PER_BOOKING, Arm, RunBase, new_screening, warm


async def browse_client(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    url = f"{spec['url']}/api/screenings/{spec['screening_id']}/seats/"
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline_s = spec.get("seconds")
    async with _session(spec["readers"]) as session:
        await _preconnect(session, spec["url"], spec["readers"])
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        started = time.time()
        deadline = started + deadline_s if deadline_s else None

        async def reader() -> None:
            while not stop.is_set() and (deadline is None or time.time() < deadline):
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    latencies.append((time.perf_counter() - t0) * 1000)
                    statuses[resp.status] += 1

        await asyncio.gather(*(reader() for _ in range(spec["readers"])))
        ended = time.time()
    return {"statuses": dict(statuses), "latencies": latencies, "started": started, "ended": ended}


class Browse(RunBase):
    def browse_alone(self, arm: Arm) -> dict[str, Any]:
        browse_id = asyncio.run(self._with_api(arm.url, self._full_screening))
        api_cpu, pg_cpu = CpuMeter(arm.api_pids), CpuMeter(self._pg_pids)
        readers = split(range(self.args.readers), self.args.load_procs)
        jobs = [
            (
                "browse",
                {
                    "url": arm.url,
                    "screening_id": browse_id,
                    "readers": len(part),
                    "seconds": self.args.browse_seconds,
                },
            )
            for part in readers
        ]
        results = [
            r for _, r in run_children(jobs, on_start=lambda: (api_cpu.start(), pg_cpu.start()))
        ]
        summary = self._browse_summary("browse", results)
        n = max(1, summary["requests"])
        summary["api_cpu_ms_per_request"] = round(api_cpu.stop() * 1000 / n, 3)
        summary["pg_cpu_ms_per_request"] = round(pg_cpu.stop() * 1000 / n, 3)
        summary["check"] = self._check(arm, "browse", [browse_id])
        return summary

    def _browse_summary(self, name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
        statuses: Counter[int] = Counter()
        for r in results:
            statuses.update({int(k): v for k, v in r["statuses"].items()})
        latencies = [x for r in results for x in r["latencies"]]
        duration = max(r["ended"] for r in results) - min(r["started"] for r in results)
        requests = sum(statuses.values())
        return {
            "scenario": name,
            "seats_in_map": self.args.browse_seats,
            "readers": self.args.readers,
            "duration_s": round(duration, 3),
            "requests": requests,
            "requests_per_s": round(requests / duration, 1) if duration > 0 else None,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "latency_ms": percentiles(latencies),
            "cdf_ms": cdf_points(latencies),
        }

    async def _full_screening(self, api: Api) -> int:
        """A screening whose every seat is held: the heaviest seat map to read."""
        screening_id, seats = await new_screening(api, self.fixture, "browse")
        tokens = self.fixture.tokens
        chunks = [
            seats[i : i + MAX_SEATS_PER_BOOKING]
            for i in range(0, len(seats), MAX_SEATS_PER_BOOKING)
        ]
        await asyncio.gather(
            *(
                api.ok(
                    "POST",
                    "/api/bookings/",
                    {"screening_id": screening_id, "seat_ids": chunk},
                    tokens[i % len(tokens)],
                    want=201,
                )
                for i, chunk in enumerate(chunks)
            )
        )
        await warm(api, screening_id)
        return screening_id
