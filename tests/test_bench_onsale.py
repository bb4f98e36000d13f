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
    *("--db-pool-max", "4", "--uncontended-seats", "20"),
    *("--scenarios", "hot,onsale,onsale4,browse,uncontended,logins"),
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
    for name in ("onsale", "onsale4", "uncontended"):
        summary = scenarios[name]
        assert summary["sold_out"] is True, summary
        assert summary["check"]["double_booked_seats"] == 0
        assert summary["check"]["seats_in_two_201s"] == 0
        assert summary["check"]["bookings_201_vs_postgres"][0] == summary["bookings"]
        assert summary["bookings"] == summary["check"]["bookings_201_vs_postgres"][1]
    assert scenarios["onsale"]["bookings"] == 40  # one seat per booking, every seat sold
    # uncontended: every user books its own share of the hall, so nobody ever meets a 409
    assert scenarios["uncontended"]["statuses"] == {"201": 20}
    # logins: the sale once quiet, once beside a burst of every user logging in again
    logins = scenarios["logins"]
    assert logins["login_statuses"] == {"200": 10}
    assert logins["bookings_p99_201_quiet_ms"] and logins["bookings_p99_201_burst_ms"]
    assert logins["check"]["double_booked_seats"] == 0
    assert scenarios["browse"]["statuses"].keys() == {"200"}
    assert all(mb > 0 for mb in arm["api_peak_rss_mb"].values())
    # Its own database is gone again.
    assert result["database"].startswith("cinema_bench_")
    assert result["database"] not in asyncio.run(_bench_databases())


def test_open_loop_mode_reports_each_rate_and_the_highest_within_target(tmp_path: Path) -> None:
    """--open-loop at two toy rates, filter on vs off in one run: every request sent on its
    schedule is answered 201 or 409, latencies come per rate, nothing is sold twice."""
    env = {**os.environ, "DATABASE_URL": BASE_DATABASE_URL}
    tiny = [
        *("--open-loop", "--rates", "20,40", "--open-seconds", "0.5", "--open-seats", "30"),
        *("--users", "6", "--seats", "20", "--browse-seats", "10", "--uncontended-seats", "20"),
        *("--open-connections", "4", "--compare", "filter=on,filter=off", "--worker", "no"),
        *("--stats-settle", "0", "--no-chart", "--db-pool-max", "4", "--results-dir"),
    ]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "onsale.py"), "--spawn", *tiny, str(tmp_path)],
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
    assert [arm["label"] for arm in result["arms"]] == ["filter=on", "filter=off"]
    for arm in result["arms"]:
        summary = arm["scenarios"]["openloop"]
        assert set(summary["rates"]) == {"20", "40"}
        for rate, figures in summary["rates"].items():
            assert figures["sent"] == round(float(rate) * 0.5)
            assert set(figures["statuses"]) <= {"201", "409"}, figures
            assert figures["bookings"] >= 1
            assert figures["latency_ms"]["p99"] is not None
        assert summary["check"]["double_booked_seats"] == 0
        within = [float(r) for r, f in summary["rates"].items() if f["p99_within_target"]]
        assert summary["max_rate_p99_within_100ms"] == (max(within) if within else None)
    assert "openloop.max_rate_p99_within_100ms" in result["ratios"] or any(
        a["scenarios"]["openloop"]["max_rate_p99_within_100ms"] is None for a in result["arms"]
    )
