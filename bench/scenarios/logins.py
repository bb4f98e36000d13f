"""logins: the 1-seat onsale twice on fresh screenings, the second time with a burst of
--logins concurrent logins (argon2 verifies) fired a moment after the bookings start: booking
p99 with vs without the burst in one run, login latency, and the API processes' peak RSS
during the burst (issue 11, item 4)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson

from bench.common import PASSWORD, memory_kb, percentiles, reset_peak_rss
from bench.onsale_load import _preconnect, _session, split
from bench.scenarios.base import Arm
from bench.scenarios.onsale import Onsale

BURST_DELAY_SECONDS = 0.3  # the bookings are under way when the logins arrive


async def logins_client(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    url, emails = spec["url"], spec["emails"]
    results: list[tuple[int, float]] = []
    async with _session(len(emails)) as session:
        await _preconnect(session, url, len(emails))

        async def login(email: str) -> None:
            body = orjson.dumps({"email": email, "password": PASSWORD})
            headers = {"Content-Type": "application/json"}
            started = time.perf_counter()
            async with session.post(url + "/api/auth/token", data=body, headers=headers) as resp:
                await resp.read()
                results.append((resp.status, (time.perf_counter() - started) * 1000))

        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        await asyncio.sleep(BURST_DELAY_SECONDS)
        await asyncio.gather(*(login(e) for e in emails))
    return {"statuses": [r[0] for r in results], "latencies": [r[1] for r in results]}


class Logins(Onsale):
    def logins(self, arm: Arm) -> dict[str, Any]:
        quiet = self.onsale(arm, 1, False)
        emails = self.fixture.emails[: self.args.logins]
        jobs = [
            ("logins", {"url": arm.url, "emails": part})
            for part in split(emails, self.args.load_procs)
        ]
        for pid in arm.api_pids():
            reset_peak_rss(pid)
        burst = self.onsale(arm, 1, False, extra_jobs=jobs)
        peak = {str(p): round(memory_kb(p).get("VmHWM", 0) / 1024, 1) for p in arm.api_pids()}
        logins = burst.pop("extra_results")
        quiet.pop("extra_results", None)
        latencies = [x for r in logins for x in r["latencies"]]
        statuses = Counter(s for r in logins for s in r["statuses"])
        p99_quiet = quiet["latency_ms_by_status"].get("201", {}).get("p99")
        p99_burst = burst["latency_ms_by_status"].get("201", {}).get("p99")
        return {
            "scenario": "logins",
            "logins": len(latencies),
            "login_statuses": {str(k): v for k, v in sorted(statuses.items())},
            "login_latency_ms": percentiles(latencies),
            "api_peak_rss_during_burst_mb": peak,
            "bookings_p99_201_quiet_ms": p99_quiet,
            "bookings_p99_201_burst_ms": p99_burst,
            "bookings_p99_all_quiet_ms": quiet["latency_ms"]["p99"],
            "bookings_p99_all_burst_ms": burst["latency_ms"]["p99"],
            "burst_over_quiet_p99": (
                round(p99_burst / p99_quiet, 3) if p99_quiet and p99_burst else None
            ),
            "quiet": {k: v for k, v in quiet.items() if k != "cdf_ms"},
            "burst": {k: v for k, v in burst.items() if k != "cdf_ms"},
            "check": {
                "double_booked_seats": quiet["check"]["double_booked_seats"]
                + burst["check"]["double_booked_seats"]
            },
        }
