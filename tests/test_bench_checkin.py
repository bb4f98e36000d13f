"""bench/checkin.py end to end at a toy size: its own server and database, every ticket
admitted once on the first pass and refused on the second, the database dropped afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import BASE_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent


def test_checkin_bench_at_toy_size() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.checkin", "--tickets", "60", "--scanners", "6",
         "--workers", "1", "--pool", "4"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": BASE_DATABASE_URL},
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["first_scan"]["statuses"] == {"200": 60}
    assert figures["second_scan"]["statuses"] == {"409": 60}
    assert figures["invariant"] == {"tickets": 60, "checked_in": 60}
    assert figures["first_scan"]["per_second"] > 0
