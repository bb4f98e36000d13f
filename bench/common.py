"""What the benchmarks share: one percentile definition, free ports, /proc meters, a spawned
`cinema serve` (+ `cinema worker`), and the JSON API client.

Percentiles are by NEAREST RANK everywhere in bench/ (and in bench/race.py's own copy): the
p-th percentile of n values is the ceil(p/100 * n)-th smallest. Figures from different
benchmarks and docs are comparable only because of that; do not add an interpolating one.

Only the standard library, aiohttp and orjson: no import from cinema/, so it measures the
server as a client would.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-1"  # every account a benchmark creates has it
SEATS_PER_ROW = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """One progress line on stderr, named after the benchmark (`[onsale 12:00:00] ...`)."""
    print(
        f"[{Path(sys.argv[0]).stem} {time.strftime('%H:%M:%S')}] {message}",
        file=sys.stderr,
        flush=True,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) by nearest rank: the smallest observed value with at
    least q % of the values at or below it (no interpolation: always a latency that happened)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered) / 100 - 1e-9)  # the margin absorbs float error in q
    return ordered[min(len(ordered) - 1, max(0, rank - 1))]


def percentiles(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 (nearest rank, see `percentile`), max and mean, rounded to 0.01 ms."""
    if not latencies_ms:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    summary: dict[str, float | None] = {
        f"p{q}": round(percentile(latencies_ms, q), 2) for q in (50, 95, 99)
    }
    summary["max"] = round(max(latencies_ms), 2)
    summary["mean"] = round(sum(latencies_ms) / len(latencies_ms), 2)
    return summary


def cdf_points(latencies_ms: Sequence[float], points: int = 100) -> list[float]:
    """Latency at 1%, 2% ... 100% (nearest rank): enough to redraw the distribution from the
    JSON alone."""
    if not latencies_ms:
        return []
    return [round(percentile(latencies_ms, 100 * i / points), 2) for i in range(1, points + 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


def memory_kb(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs), so setup logins do not count."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return sorted(kids)


@dataclass
class CpuMeter:
    """CPU seconds used by a set of processes between start() and stop()."""

    pids: Callable[[], Iterable[int]]
    before: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self.before = {p: c for p in self.pids() if (c := cpu_seconds(p)) is not None}

    def stop(self) -> float:
        total = 0.0
        for pid in set(self.pids()) | set(self.before):
            now = cpu_seconds(pid)
            if now is not None:
                total += now - self.before.get(pid, 0.0)
        return round(total, 3)


class SpawnedServer:
    """`cinema migrate` + `cinema serve --workers N` on a free port, with its own settings."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path, cwd: Path = ROOT) -> None:
        self.env = env
        self.workers = workers
        self.cwd = cwd  # `python -m cinema` imports the cinema package found here
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.worker_proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def command(*args: str) -> list[str]:
        return [sys.executable, "-m", "cinema", *args]

    def start(self, with_worker: bool) -> None:
        logfile = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ),
            env=self.env,
            cwd=self.cwd,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if with_worker:
            self.worker_proc = subprocess.Popen(
                self.command("worker"),
                env=self.env,
                cwd=self.cwd,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if self.workers <= 1 or len(children_of(self.proc.pid)) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not listen within 60 s; see {self.log_path}")

    def api_pids(self) -> list[int]:
        if self.proc is None:
            return []
        kids = children_of(self.proc.pid)
        return kids if self.workers > 1 and kids else [self.proc.pid]

    def worker_pids(self) -> list[int]:
        if self.worker_proc is None or self.worker_proc.poll() is not None:
            return []
        return [self.worker_proc.pid, *children_of(self.worker_proc.pid)]

    def stop(self) -> None:
        for proc in (self.proc, self.worker_proc):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session, started above
                proc.wait(timeout=10)


def cli_has_command(env: dict[str, str], name: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "cinema", "--help"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return name in out.split("{", 1)[-1].split("}", 1)[0].split(",")


class Api:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            return resp.status, (orjson.loads(raw) if raw else None)

    async def ok(
        self, method: str, path: str, body: Any = None, token: str | None = None, want: int = 200
    ) -> Any:
        status, reply = await self.call(method, path, body, token)
        if status != want:
            raise RuntimeError(f"{method} {path} answered {status}: {reply}")
        return reply

    async def token(self, email: str) -> str:
        reply = await self.ok("POST", "/api/auth/token", {"email": email, "password": PASSWORD})
        return str(reply["access_token"])

    async def seat_ids(self, screening_id: int) -> list[int]:
        reply = await self.ok("GET", f"/api/screenings/{screening_id}/seats/")
        return [s["id"] for s in reply["seats"]]

    async def seat_counts(self, screening_id: int) -> dict[str, int]:
        reply = await self.ok("GET", f"/api/screenings/{screening_id}/seats/")
        return dict(reply["counts"])


def hall_layout(seats: int) -> dict[str, Any]:
    rows = []
    left, index = seats, 0
    while left > 0:
        rows.append({"label": f"R{index + 1}", "seats": min(SEATS_PER_ROW, left)})
        left -= SEATS_PER_ROW
        index += 1
    return {"rows": rows}
