"""bench/fanout.py end to end at a toy size: its own servers and database, every seat sold
once in every arm, every event at every viewer, the viewers' seat maps equal to PostgreSQL's
(the bench's exit code says so), the database dropped afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import BASE_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent


def test_fanout_bench_at_toy_size() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--viewers", "20", "--viewer-procs", "2",
         "--buyers", "5", "--seats", "30", "--workers", "1", "--pool", "4", "--rounds", "1",
         "--parse-every", "2", "--baseline-src", str(ROOT),
         "--baseline-env", "SSE_BATCH_SECONDS=0.1"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": BASE_DATABASE_URL},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    # --baseline-src (here the same tree): the viewers arm once more, on a third server.
    assert {a["arm"] for a in figures["arms"]} == {"on", "off", "viewers", "baseline"}
    for watched in (a for a in figures["arms"] if a["arm"] in ("viewers", "baseline")):
        assert watched["viewers"] == {"connected": 20, "refused": {}, **watched["viewers"]}
        delivery = watched["delivery"]
        assert delivery["events_received"] == delivery["events_expected"] == 30 * 20
        assert delivery["exact_maps"] == delivery["full_viewers"] == 10
        assert delivery["latency_samples"] == 30 * 10
    assert figures["summary"]["baseline"]["vs_on"] > 0
    assert figures["baseline_env"] == {"SSE_BATCH_SECONDS": "0.1"}
