"""Run `cinema worker` as a real subprocess (tests and bench/expiry_burst.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """One `cinema worker` process with its own log file and metrics port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            **env,
            "WORKER_METRICS_PORT": str(self.metrics_port),
            "HOST": "127.0.0.1",
        }
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the process
            prefix="cinema-worker-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cinema", "worker"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while "expiry worker started" not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker did not start:\n{self.output()}")
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """A counter's value from the worker's /metrics (0 if not exported yet)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/", timeout=5) as r:
            text = r.read().decode()
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if wanted else "")
        match = re.search(r"^" + pattern + r" ([0-9.e+-]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        self.log.close()
        os.unlink(self.log.name)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def worker_env(
    database_url: str, redis_url: str, jwt_secret: str, prefix: str, **extra: Any
) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": jwt_secret,
        "REDIS_KEY_PREFIX": prefix,
        "HOLD_TTL_SECONDS": "2",
        "LOG_LEVEL": "INFO",
    }
    env.update({k.upper(): str(v) for k, v in extra.items()})
    return env
