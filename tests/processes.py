"""Real `cinema serve` processes for tests: started with their own settings, waited for with a
deadline, stopped by signal, their JSON logs kept for inspection."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import JWT_SECRET, REDIS_URL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Any, within: float = 15.0, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll `predicate` until it holds; fail, naming `what`, once the deadline passes."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(interval)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class ServerProcess:
    def __init__(
        self,
        workdir: Path,
        database_url: str,
        redis_prefix: str,
        workers: int = 1,
        port: int | None = None,  # a restarted server takes its predecessor's port
        **env: str,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        values = {
            **inherited,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": redis_prefix,
            "JWT_SECRET": JWT_SECRET,
            "LOG_FORMAT": "json",
            "RATE_LIMIT_BOOKINGS_PER_MINUTE": "0",
            "RATE_LIMIT_AUTH_PER_MINUTE": "0",
            "DB_POOL_MAX": "20",
            **env,
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "cinema", "serve", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--workers", str(workers)),
            ],
            env=values,
            cwd=workdir,  # no stray .env is read
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, within: float = 90.0) -> ServerProcess:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output()}")
            return _answers(self.url + "/health")

        # Generous: a start-up (imports, migrations, pools) took over 30 s at load average 27.
        wait_until(up, within, what=f"the server on {self.url} answering /health")
        return self

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, within: float = 30.0) -> int:
        return self.proc.wait(timeout=within)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.output().splitlines():
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if isinstance(item, dict):
                lines.append(item)
        return lines

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0) until reaped; count it as dead
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
