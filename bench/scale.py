#!/usr/bin/env python3
"""bench/onsale.py with the servers its scaling arms need, started here on loopback and stopped
at the end: a 3-master/3-replica Redis Cluster (Debian's redis-server) and Debian's PgBouncer
in transaction mode in front of --database-url's PostgreSQL. Also reports what PostgreSQL
wrote to its WAL during the run (pg_stat_wal: the whole server, other users included).

    python bench/scale.py --compare redis=single,redis=cluster --scenarios hot,onsale
    python bench/scale.py --compare db=direct,db=nocache,db=pgbouncer --scenarios uncontended

Every other argument goes to bench/onsale.py (--spawn is implied). See docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as `python bench/scale.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import onsale
from bench.common import log, with_database
from tests.cluster_fixtures import RedisClusterProcs
from tests.pgbouncer_fixtures import PgBouncer

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/cinema"


async def _wal(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        row = await conn.fetchrow("SELECT wal_records, wal_bytes FROM pg_stat_wal")
        return int(row["wal_records"]), int(row["wal_bytes"])
    finally:
        await conn.close()


class WaitSampler(threading.Thread):
    """What the benchmark's PostgreSQL backends are doing, sampled every 0.1 s: running on
    CPU (no wait event), waiting for a lock (Lock/...), for the WAL (LWLock/WALWrite,
    IO/WALSync), or idle in a transaction. Counts of samples, so shares of backend time."""

    QUERY = (
        "SELECT coalesce(wait_event_type || '/' || wait_event, 'CPU') AS what, count(*)"
        " FROM pg_stat_activity WHERE datname LIKE 'cinema_bench_%' AND state = 'active'"
        " AND pid <> pg_backend_pid() GROUP BY 1"
    )

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = with_database(dsn, "postgres")
        self.counts: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._sample())

    async def _sample(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            while not self.stop.is_set():
                for row in await conn.fetch(self.QUERY):
                    self.counts[row["what"]] += row["count"]
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    def summary(self) -> str:
        total = sum(self.counts.values()) or 1
        return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in self.counts.most_common(8))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    # A SIGTERM would end the run at once and leave the cluster and PgBouncer running;
    # as an interrupt, the `finally` below stops them.
    signal.signal(signal.SIGTERM, _interrupt)
    dsn = os.environ.get("DATABASE_URL", DEFAULT_DSN)
    compare = argv[argv.index("--compare") + 1] if "--compare" in argv else ""
    workdir = Path(tempfile.mkdtemp(prefix="cinema-scale-"))
    workdir.chmod(0o755)  # PgBouncer runs as postgres and writes its log below
    cluster = RedisClusterProcs(workdir / "cluster")
    bouncer = PgBouncer(workdir / "pgbouncer", dsn)
    try:
        if "redis=cluster" in compare:
            (workdir / "cluster").mkdir()
            os.environ["BENCH_CLUSTER_URL"] = cluster.start().url
            log(f"redis cluster at {os.environ['BENCH_CLUSTER_URL']}")
        if "db=pgbouncer" in compare:
            (workdir / "pgbouncer").mkdir()
            bouncer.start()
            os.environ["BENCH_PGBOUNCER"] = f"127.0.0.1:{bouncer.port}"
            log(f"pgbouncer at {os.environ['BENCH_PGBOUNCER']}")
        records, wal_bytes = asyncio.run(_wal(dsn))
        sampler = WaitSampler(dsn)
        sampler.start()
        started = time.monotonic()
        try:
            code = onsale.main(["--spawn", *argv])
        finally:
            seconds = time.monotonic() - started
            sampler.stop.set()
            sampler.join(timeout=5)
        log(f"active bench backends, by what they waited for: {sampler.summary()}")
        records_after, bytes_after = asyncio.run(_wal(dsn))
        log(
            f"WAL during the run (whole server): {records_after - records} records, "
            f"{(bytes_after - wal_bytes) / 1e6:.1f} MB in {seconds:.0f} s"
        )
        return code
    finally:
        cluster.stop()
        bouncer.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
