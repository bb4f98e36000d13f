"""The `cinema` command: migrate, serve, createuser, demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Sequence

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
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )


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


def _serve_child(settings: Settings, sock: socket.socket, host: str, port: int) -> None:
    try:
        _serve_one(settings, sock, host, port)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"cinema serve: cannot use PostgreSQL or Redis: {exc}", file=sys.stderr)
        sys.exit(1)


def _serve_one(settings: Settings, sock: socket.socket | None, host: str, port: int) -> None:
    from aiohttp import web

    from cinema.app import init_app

    _configure_logging(settings)
    _install_uvloop()
    app = init_app(settings)
    if sock is not None:
        web.run_app(
            app, sock=sock, print=None, access_log=None, shutdown_timeout=10, backlog=BACKLOG
        )
    else:
        web.run_app(
            app,
            host=host,
            port=port,
            print=None,
            access_log=None,
            shutdown_timeout=10,
            backlog=BACKLOG,
        )


def serve(settings: Settings, host: str, port: int, workers: int) -> int:
    if workers <= 1:
        print(f"serving on http://{host}:{port}", flush=True)
        _serve_one(settings, None, host, port)
        return 0
    # One listening socket shared by every worker process: the kernel spreads connections.
    sock = socket.create_server((host, port), backlog=BACKLOG)
    sock.set_inheritable(True)
    ctx = multiprocessing.get_context("fork")
    children = [
        ctx.Process(target=_serve_child, args=(settings, sock, host, port), daemon=False)
        for _ in range(workers)
    ]
    for child in children:
        child.start()
    print(f"serving on http://{host}:{port} with {workers} processes", flush=True)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM if signum != signal.SIGINT else signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    return max((child.exitcode or 0) for child in children)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    return serve(
        settings,
        args.host or settings.host,
        args.port or settings.port,
        args.workers,
    )


def cmd_createuser(settings: Settings, args: argparse.Namespace) -> int:
    from cinema.tools import create_user

    try:
        user_id = asyncio.run(create_user(settings, args.email, args.password, args.staff))
    except ValueError as exc:
        print(f"createuser: {exc}", file=sys.stderr)
        return 1
    print(f"created user {user_id} <{args.email}>" + (" (staff)" if args.staff else ""))
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
    p = sub.add_parser("createuser", help="create a user")
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--staff", action="store_true", help="may use /api/admin/ endpoints")
    return parser


COMMANDS = {
    "migrate": cmd_migrate,
    "serve": cmd_serve,
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
