"""openloop: bookings arrive at fixed rates whatever the server's speed.

Each rate gets a fresh screening of --open-seats seats. Every load process sends its share of
the rate on a fixed schedule (request i of a process is due at start + i / its rate) with a
seat drawn at random from the hall (so early requests mostly win and later ones meet taken
seats, as in an onsale), from its own tokens in turn, for --open-seconds. A request is never
held back by an earlier one: each is its own task, on as many connections as are needed.

Latency is counted from the request's INTENDED send time, so a stalled server (or client) is
not hidden (no coordinated omission). `send_lag_ms` is how late the client itself started the
requests: when its p99 is more than a few ms the client, not the server, was the bottleneck
and the run says so (`client_bound`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from bench.common import Api, CpuMeter, percentiles
from bench.onsale_load import _auth, _preconnect, _session, run_children, split
from bench.scenarios.base import Arm, RunBase, new_screening, warm

P99_TARGET_MS = 100.0
CLIENT_LAG_LIMIT_MS = 10.0  # a p99 send lag above this: the client could not keep the rate


async def openloop_client(spec: dict[str, Any], barrier: Any, stop: Any) -> dict[str, Any]:
    url, rate, seconds = spec["url"], spec["rate"], spec["seconds"]
    seats, screening_id = spec["seat_ids"], spec["screening_id"]
    headers = [_auth(t) for t in spec["tokens"]]
    count = max(1, round(rate * seconds))
    results: list[tuple[int, float, float]] = []  # status, latency ms, send lag ms
    errors: list[str] = []
    async with _session(spec["connections"]) as session:
        await _preconnect(session, url, spec["connections"])

        async def send(i: int, due: float) -> None:
            lag = (time.perf_counter() - due) * 1000
            body = orjson.dumps({"screening_id": screening_id, "seat_ids": [random.choice(seats)]})
            try:
                async with session.post(
                    url + "/api/bookings/", data=body, headers=headers[i % len(headers)]
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, raw = 0, repr(exc).encode()
            results.append((status, (time.perf_counter() - due) * 1000, lag))
            if status not in (201, 409) and len(errors) < 5:
                errors.append(f"{status} {raw[:200]!r}")

        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        start = time.perf_counter() + spec["offset"]
        tasks = []
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i, due)))
        sent_by = time.perf_counter()
        await asyncio.gather(*tasks)
        ended = time.perf_counter()
    return {
        "results": results,
        "errors": errors,
        "send_seconds": sent_by - start,
        "seconds": ended - start,
    }


def rate_summary(rate: float, reports: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for rep in reports for r in rep["results"]]
    statuses = Counter(r[0] for r in rows)
    by_status = {s: [r[1] for r in rows if r[0] == s] for s in statuses}
    latency = percentiles([r[1] for r in rows])
    lag = percentiles([r[2] for r in rows])
    elapsed = max(rep["seconds"] for rep in reports)
    return {
        "rate": rate,
        "sent": len(rows),
        "answered_per_s": round(len(rows) / elapsed, 1) if elapsed else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "bookings": statuses.get(201, 0),
        "latency_ms": latency,
        "latency_ms_by_status": {str(s): percentiles(v) for s, v in sorted(by_status.items())},
        "send_lag_ms": lag,
        "client_bound": (lag["p99"] or 0) > CLIENT_LAG_LIMIT_MS,
        "p99_within_target": (latency["p99"] or 1e9) <= P99_TARGET_MS,
        "errors": [e for rep in reports for e in rep["errors"]][:5],
    }


class OpenLoop(RunBase):
    def openloop(self, arm: Arm) -> dict[str, Any]:
        rates = [float(r) for r in str(self.args.rates).split(",") if r.strip()]
        per_rate: dict[str, Any] = {}
        screenings: list[int] = []
        api_cpu = CpuMeter(arm.api_pids)
        cpu_s = 0.0
        for rate in rates:
            screening_id, seats = asyncio.run(self._with_api(arm.url, self._prepare))
            screenings.append(screening_id)
            procs = max(1, min(self.args.load_procs, len(self.fixture.tokens)))
            token_parts = split(self.fixture.tokens, procs)
            jobs = [
                (
                    "openloop",
                    {
                        "url": arm.url,
                        "screening_id": screening_id,
                        "seat_ids": seats,
                        "tokens": part,
                        "rate": rate / len(token_parts),
                        "seconds": self.args.open_seconds,
                        # the processes' schedules interleave instead of colliding
                        "offset": i / rate,
                        "connections": self.args.open_connections,
                    },
                )
                for i, part in enumerate(token_parts)
            ]
            results = run_children(jobs, on_start=api_cpu.start)
            cpu_s += api_cpu.stop()
            summary = rate_summary(rate, [r for _, r in results])
            per_rate[f"{rate:g}"] = summary
            print(f"  open loop {arm.label} {rate:g}/s: {_line(summary)}", flush=True)
        sent = sum(s["sent"] for s in per_rate.values())
        within = [float(k) for k, s in per_rate.items() if s["p99_within_target"]]
        check = self._check(arm, "openloop", screenings)
        return {
            "scenario": "openloop",
            "rates": per_rate,
            "seconds_per_rate": self.args.open_seconds,
            "seats": self.args.open_seats,
            "max_rate_p99_within_100ms": max(within) if within else None,
            "client_bound_at": [k for k, s in per_rate.items() if s["client_bound"]],
            "api_cpu_s": round(cpu_s, 3),
            "api_cpu_ms_per_request": round(cpu_s * 1000 / max(1, sent), 3),
            "check": check,
        }

    async def _prepare(self, api: Api) -> tuple[int, list[int]]:
        screening_id, seats = await new_screening(api, self.fixture, "openloop")
        await warm(api, screening_id)
        return screening_id, seats


def _line(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    bound = " (CLIENT-BOUND)" if s["client_bound"] else ""
    return (
        f"sent {s['sent']}, {s['statuses']}, p50 {lat['p50']} ms, p99 {lat['p99']} ms,"
        f" send lag p99 {s['send_lag_ms']['p99']} ms{bound}"
    )
