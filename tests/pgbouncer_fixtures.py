"""Debian's PgBouncer in transaction mode on a free loopback port, in front of the shared
PostgreSQL (127.0.0.1:5432), for tests and bench/scale.py. `auth_type = any`: every client
logs in as the database entry's user (postgres, trust on this machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
POOL_SIZE = 20  # server connections per database: PostgreSQL's 300 are shared by many


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(workdir: Path, port: int, upstream: str) -> str:
    parts = urlsplit(upstream)
    host, pg_port = parts.hostname or "127.0.0.1", parts.port or 5432
    user = parts.username or "postgres"
    return f"""[databases]
* = host={host} port={pg_port} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 2000
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
user = postgres
"""


@dataclass
class PgBouncer:
    workdir: Path
    upstream: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        self.port = self.port or _free_port()
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(_config(self.workdir, self.port, self.upstream))
        # It refuses to run as root: `user = postgres` drops to that account, which must
        # be able to write its log and pid file.
        shutil.chown(self.workdir, "postgres")
        self.proc = subprocess.Popen(
            [PGBOUNCER, "-q", str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def url(self, database_url: str) -> str:
        """`database_url` (a direct one) through this PgBouncer."""
        parts = urlsplit(database_url)
        return urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{self.port}"))

    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)
        self.proc = None
        pid = self.workdir / "pgbouncer.pid"
        if pid.exists():
            pid.unlink()

    def restart(self) -> None:
        """Killed and started again on the same port: every client connection breaks."""
        self.stop()
        self.start()


# Per module: its server connections to the test database close with it, so no idle
# backend of ours flushes statistics into another module's transaction counts.
@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[PgBouncer]:
    if not os.path.exists(PGBOUNCER):
        pytest.skip("pgbouncer is not installed (Debian's package: apt-get install pgbouncer)")
    from tests.conftest import BASE_DATABASE_URL

    workdir = Path(tempfile.mkdtemp(prefix="cinema-pgbouncer-"))
    bouncer = PgBouncer(workdir, BASE_DATABASE_URL)
    try:
        yield bouncer.start()
    finally:
        bouncer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
