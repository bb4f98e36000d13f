"""The `cinema` command: migrate, serve, worker, createuser, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import asyncpg

from cinema.settings import Settings, SettingsError, load_settings

# An onsale opens thousands of connections at once; a short accept queue turns that burst
# into one-second SYN retries.
BACKLOG = 4096


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _configure_logging(settings: Settings) -> None:
    from cinema.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from cinema.store.migrations import migrate

    applied = asyncio.run(migrate(settings.database_url))
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


def _die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel send SIGTERM to this worker when its parent dies, so workers
    never outlive a parent killed with SIGKILL (they would keep the port and serve stale code)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _serve_child(settings: Settings, sock: socket.socket, host: str, port: int, ppid: int) -> None:
    try:
        _serve_one(settings, sock, host, port, ppid)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"cinema serve: cannot use PostgreSQL or Redis: {exc}", file=sys.stderr)
        sys.exit(1)


async def _stop_if_asked_while_starting(app: Any) -> None:
    """SIGTERM during start-up cancels the start-up, but a driver that turns the cancellation
    into an error of its own (the Redis pool warm-up's gather of connects reports "Timeout
    connecting" instead) lets start-up carry on, and the process serves until SIGKILL. Runs
    last in start-up: a stop asked for meanwhile is honoured here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _serve_one(
    settings: Settings, sock: socket.socket | None, host: str, port: int, parent_pid: int = 0
) -> None:
    if parent_pid:
        # Own process group: a terminal's Ctrl-C reaches the parent only, which forwards
        # one SIGTERM, instead of every worker getting SIGINT and then SIGTERM as well.
        os.setpgid(0, 0)
        _die_with_parent(parent_pid)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    from aiohttp import web

    from cinema.app import init_app

    _configure_logging(settings)
    _install_uvloop()
    app = init_app(settings)
    app.on_startup.append(_stop_if_asked_while_starting)
    timeout = settings.shutdown_timeout_seconds
    # On SIGTERM/SIGINT aiohttp stops accepting, lets in-flight requests finish for up to
    # `timeout` seconds (then cancels them: a booking's transaction rolls back whole), and
    # only then runs the cleanup that closes the PostgreSQL and Redis pools.
    options: dict[str, Any] = {
        "print": None,
        "access_log": None,  # cinema.access logs one JSON line per request instead
        "shutdown_timeout": timeout,
        "backlog": BACKLOG,
    }
    if sock is not None:
        web.run_app(app, sock=sock, **options)
    else:
        web.run_app(app, host=host, port=port, **options)


def _metrics_dir(workers: int) -> tuple[str | None, bool]:
    """PROMETHEUS_MULTIPROC_DIR for the workers: the operator's (emptied of a previous run's
    files), or a temporary folder of our own when several processes must share their metrics.
    Returns (folder, whether we created it)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        return given, False
    if workers <= 1:
        return None, False
    folder = tempfile.mkdtemp(prefix="cinema-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder, True


def serve(settings: Settings, host: str, port: int, workers: int) -> int:
    metrics_dir, own_dir = _metrics_dir(workers)
    try:
        if workers <= 1:
            print(f"serving on http://{host}:{port}", flush=True)
            _serve_one(settings, None, host, port)
            return 0
        return _serve_many(settings, host, port, workers)
    finally:
        if own_dir and metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


class _WorkerSet:
    """Forked serve workers: stopped once (SIGTERM), reaped as they exit, killed past the
    deadline. A worker that dies on its own stops the rest and makes the exit code 1."""

    def __init__(self, children: Sequence[BaseProcess], grace_seconds: float) -> None:
        self._children = children
        self._grace = grace_seconds
        self._stopping = False
        self._deadline = 0.0

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._deadline = time.monotonic() + self._grace
        for child in self._children:
            if child.pid is not None and child.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    def supervise(self) -> int:
        from multiprocessing.connection import wait

        # Not cinema.metrics: creating metrics here would leave files of the parent's own.
        from prometheus_client.multiprocess import mark_process_dead

        failed = False
        running = list(self._children)
        while running:
            timeout = max(0.0, self._deadline - time.monotonic()) if self._stopping else None
            ready = wait([c.sentinel for c in running], timeout=timeout)
            if not ready:  # stragglers past the deadline
                for child in running:
                    child.kill()
                continue
            for child in [c for c in running if c.sentinel in ready]:
                child.join()
                running.remove(child)
                if child.pid is not None:
                    mark_process_dead(child.pid)  # type: ignore[no-untyped-call]
                clean = child.exitcode == 0 or (
                    self._stopping and child.exitcode == -signal.SIGTERM
                )
                if not clean or not self._stopping:
                    failed = True
                    print(f"worker {child.pid} exited with {child.exitcode}", file=sys.stderr)
                self.stop()
        return 1 if failed else 0


def _serve_many(settings: Settings, host: str, port: int, workers: int) -> int:
    """N forked workers accept on one listening socket (the kernel spreads connections).
    SIGTERM/SIGINT: forwarded once as SIGTERM; workers get shutdown_timeout plus a margin to
    finish, then SIGKILL. A worker that dies on its own stops the rest and the exit code is 1,
    so a supervisor (compose, systemd) restarts the whole set. Exit code 0 after a clean stop."""
    sock = socket.create_server((host, port), backlog=BACKLOG)
    sock.set_inheritable(True)
    ctx = multiprocessing.get_context("fork")
    parent_pid = os.getpid()
    children = [
        ctx.Process(target=_serve_child, args=(settings, sock, host, port, parent_pid))
        for _ in range(workers)
    ]
    workers_set = _WorkerSet(children, settings.shutdown_timeout_seconds + 5)

    def on_signal(signum: int, _frame: object) -> None:
        workers_set.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for child in children:
        child.start()
    sock.close()  # the workers hold it now
    print(f"serving on http://{host}:{port} with {workers} processes", flush=True)
    return workers_set.supervise()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    return serve(
        settings,
        args.host or settings.host,
        args.port or settings.port,
        args.workers,
    )


# Taskiq logs every send and every execution at INFO: thousands of lines in a burst.
_CHATTY_WORKER_LOGGERS = (
    "taskiq.cli.scheduler.run",
    "taskiq.receiver.receiver",
    "taskiq.scheduler.scheduler",
)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Taskiq receiver + scheduler + reconciler + sweeps; stops on SIGTERM/SIGINT. Imports no
    HTTP server code (cinema/bootstrap.py builds it), so a restarted worker is back sooner."""
    import logging

    from cinema.bootstrap import worker_loop

    _configure_logging(settings)
    _install_uvloop()
    if settings.log_level != "DEBUG":
        for name in _CHATTY_WORKER_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with worker_loop(settings) as worker:
            if settings.worker_metrics_port:
                _serve_worker_metrics(settings)
            await worker.run(stop)

    asyncio.run(main())
    return 0


def _serve_worker_metrics(settings: Settings) -> None:
    import logging

    from prometheus_client import start_http_server

    start_http_server(settings.worker_metrics_port, addr=settings.host)
    logging.getLogger("cinema.worker").info(
        "worker metrics on http://%s:%d/", settings.host, settings.worker_metrics_port
    )


def _read_password(args: argparse.Namespace) -> str:
    """The new account's password: --password-file, --password-stdin, --password (scripts
    only: it shows in `ps` and the shell history), else a prompt on the terminal."""
    if args.password_file is not None:
        with open(args.password_file, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if args.password is not None:
        return str(args.password)
    if not sys.stdin.isatty():
        raise ValueError("no password: give --password-file PATH or --password-stdin")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise ValueError("the passwords do not match")
    return first


def cmd_createuser(settings: Settings, args: argparse.Namespace) -> int:
    from cinema.auth.model import Role
    from cinema.tools import create_user

    role = Role(args.role) if args.role else (Role.ADMIN if args.staff else Role.CUSTOMER)
    if args.staff and role is not Role.ADMIN:
        print("createuser: --staff means --role admin", file=sys.stderr)
        return 2
    try:
        password = _read_password(args)
        user_id = asyncio.run(create_user(settings, args.email, password, role))
    except (ValueError, OSError) as exc:
        print(f"createuser: {exc}", file=sys.stderr)
        return 1
    staff = " (staff)" if role is Role.ADMIN else ""
    print(f"created user {user_id} <{args.email}> with role {role.value}{staff}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from cinema.demo import load_demo
    from cinema.store.migrations import migrate

    asyncio.run(migrate(settings.database_url))
    summary = asyncio.run(load_demo(settings))
    print(summary, flush=True)
    return cmd_serve(settings, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinema", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending db/ migrations")
    for name, text in (("serve", "run the API"), ("demo", "migrate, load demo data and serve")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--host", help="listen address (default: HOST)")
        p.add_argument("--port", type=int, help="listen port (default: PORT)")
        p.add_argument("--workers", type=int, default=1, help="API processes on one port")
    sub.add_parser("worker", help="end unpaid bookings at their deadline (Taskiq + reconciler)")
    p = sub.add_parser("createuser", help="create a user")
    p.add_argument("--email", required=True)
    p.add_argument("--role", choices=("customer", "box_office", "admin"), help="default customer")
    p.add_argument("--staff", action="store_true", help="the same as --role admin")
    given = p.add_mutually_exclusive_group()
    given.add_argument("--password-file", metavar="PATH", help="read the password from a file")
    given.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    given.add_argument(
        "--password", help="for scripts only (visible in ps and shell history); default: prompt"
    )
    return parser


COMMANDS = {
    "migrate": cmd_migrate,
    "serve": cmd_serve,
    "worker": cmd_worker,
    "createuser": cmd_createuser,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = _settings()
    if args.command in ("serve", "demo") and args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](settings, args)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Unreachable or refusing PostgreSQL at start-up: one line, not a traceback.
        print(f"cinema {args.command}: cannot use PostgreSQL or Redis: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
