"""bench/onsale.py end to end at toy sizes: it must start its own server, run every scenario,
find no double booking, see exactly one hot-seat winner, and clean up after itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.conftest import BASE_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent


async def _bench_databases() -> set[str]:
    base, _, _ = BASE_DATABASE_URL.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'cinema_bench_%'"
        )
    finally:
        await conn.close()
    return {r["datname"] for r in rows}


SMALL = [
    *("--clients", "50", "--users", "10", "--seats", "40", "--browse-seats", "30"),
    *("--readers", "4", "--browse-seconds", "0.5", "--stats-settle", "0", "--no-chart"),
    *("--db-pool-max", "4"),
    "--results-dir",
]


def test_onsale_benchmark_runs_and_finds_no_double_booking(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": BASE_DATABASE_URL}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "onsale.py"), "--spawn", *SMALL, str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [result_file] = tmp_path.glob("onsale-*.json")
    result = json.loads(result_file.read_text())
    assert result["failures"] == []
    [arm] = result["arms"]
    scenarios = arm["scenarios"]
    assert scenarios["hot"]["statuses"] == {"201": 1, "409": 49}
    for name in ("onsale", "onsale4"):
        summary = scenarios[name]
        assert summary["sold_out"] is True, summary
        assert summary["check"]["double_booked_seats"] == 0
        assert summary["check"]["seats_in_two_201s"] == 0
        assert summary["check"]["bookings_201_vs_postgres"][0] == summary["bookings"]
        assert summary["bookings"] == summary["check"]["bookings_201_vs_postgres"][1]
    assert scenarios["onsale"]["bookings"] == 40  # one seat per booking, every seat sold
    assert scenarios["browse"]["statuses"].keys() == {"200"}
    assert all(mb > 0 for mb in arm["api_peak_rss_mb"].values())
    # Its own database is gone again.
    assert result["database"].startswith("cinema_bench_")
    assert result["database"] not in asyncio.run(_bench_databases())
