"""The server's per-stage timings (STAGE_TIMINGS=1, cinema/stages.py) as the benchmark reads
them: `cinema_stage_seconds` from /metrics before and after a scenario, the difference per
(status, stage) as count, mean and bucketed p50/p99 (the upper bound of the histogram bucket
holding that rank, so "<= 5 ms" reads as "5")."""

from __future__ import annotations

import math
import re
from typing import Any

import aiohttp

_SAMPLE = re.compile(r"^cinema_stage_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
Key = tuple[str, str, str]  # route, status, stage


def parse(text: str) -> dict[Key, dict[str, Any]]:
    found: dict[Key, dict[str, Any]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        kind, raw_labels, value = match.groups()
        labels = dict(_LABEL.findall(raw_labels))
        key = (labels.get("route", ""), labels.get("status", ""), labels.get("stage", ""))
        entry = found.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        if kind == "bucket":
            entry["buckets"][float(labels["le"])] = float(value)
        else:
            entry[kind] = float(value)
    return found


async def scrape(url: str) -> dict[Key, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        return parse(await resp.text())


def _bucket_quantile(buckets: dict[float, float], count: float, q: float) -> float | None:
    if count <= 0:
        return None
    want = math.ceil(q * count - 1e-9)
    for bound in sorted(buckets):
        if buckets[bound] >= want:
            return bound
    return None


def breakdown(
    before: dict[Key, dict[str, Any]],
    after: dict[Key, dict[str, Any]],
    route: str = "/api/bookings/",
) -> dict[str, dict[str, dict[str, float | None]]]:
    """{status: {stage: {count, mean_ms, p50_ms, p99_ms}}} of what happened in between."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for key, now in sorted(after.items()):
        if key[0] != route:
            continue
        then = before.get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        count = now["count"] - then["count"]
        if count <= 0:
            continue
        buckets = {b: v - then["buckets"].get(b, 0.0) for b, v in now["buckets"].items()}
        p50, p99 = (_bucket_quantile(buckets, count, q) for q in (0.5, 0.99))
        out.setdefault(key[1], {})[key[2]] = {
            "count": int(count),
            "mean_ms": round((now["sum"] - then["sum"]) * 1000 / count, 3),
            "p50_ms": None if p50 is None or math.isinf(p50) else round(p50 * 1000, 2),
            "p99_ms": None if p99 is None or math.isinf(p99) else round(p99 * 1000, 2),
        }
    return out


def table(stages: dict[str, dict[str, dict[str, float | None]]], status: str = "201") -> str:
    rows = stages.get(status, {})
    if not rows:
        return ""
    lines = [f"stages of {status}s: stage, count, mean ms, p50 <= ms, p99 <= ms"]
    for stage, s in sorted(rows.items(), key=lambda kv: -(kv[1]["mean_ms"] or 0)):
        lines.append(
            f"  {stage:24} {s['count']:>7} {s['mean_ms']:>9} {s['p50_ms']!s:>7} {s['p99_ms']!s:>7}"
        )
    return "\n".join(lines)
