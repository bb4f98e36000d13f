"""The production layout on loopback: the processes docker-compose.yml runs (its `migrate` and
`web` commands, read from the file) with nginx in front, configured from the same template the
nginx container renders. Needs Debian's nginx (.ci/run installs it)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from cinema.store.pool import drop_database
from tests.client import ApiClient, wait_for
from tests.conftest import BASE_DATABASE_URL, JWT_SECRET, REDIS_URL, RUN_ID, Users
from tests.sse import open_stream
from tests.test_race import race, statuses

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TEMPLATE = ROOT / "nginx" / "templates" / "cinema.conf.template"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render(template: str, values: Mapping[str, str]) -> str:
    """What the nginx image's envsubst does: replace ${NAME} for the names it is given only."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def compose_command(service: str, **options: str) -> list[str]:
    """A service's command from docker-compose.yml, with `--option value` pairs replaced and
    `cinema` resolved to this virtual environment's script."""
    command = [str(part) for part in COMPOSE["services"][service]["command"]]
    for name, value in options.items():
        flag = "--" + name
        assert flag in command, f"{service}'s command has no {flag}: {command}"
        command[command.index(flag) + 1] = value
    assert command[0] == "cinema"
    return [str(Path(sys.executable).parent / "cinema"), *command[1:]]


@dataclass
class Nginx:
    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.folder / "error.log").read_text(errors="replace")


SWAGGER_UI = ROOT / "cinema" / "api" / "static" / "swagger-ui"
WEB_APP = ROOT / "cinema" / "api" / "static" / "app"


def static_root(www: Path) -> Path:
    """The files the nginx image carries, laid out as its Dockerfile stage lays them out."""
    shutil.copytree(ROOT / "static", www / "static")
    (www / "docs").mkdir()
    if SWAGGER_UI.is_dir():
        shutil.copytree(SWAGGER_UI, www / "docs" / "static")
    shutil.copytree(WEB_APP, www / "app")
    return www


def nginx_config(folder: Path, upstream: str, port: int) -> Path:
    """A whole nginx.conf around the rendered template: the parts the image's own nginx.conf
    provides (events, mime types, temp paths), here inside a private folder."""
    template = TEMPLATE.read_text()
    environment = COMPOSE["services"]["nginx"]["environment"]
    unset = set(re.findall(r"\$\{(\w+)\}", template)) - set(environment)
    assert not unset, f"docker-compose.yml does not give nginx {unset}"
    values = {
        "CINEMA_UPSTREAM": upstream,
        "NGINX_PORT": str(port),
        "STATIC_ROOT": str(static_root(folder / "www")),
    }
    site = render(template, {**environment, **values})
    (folder / "cinema.conf").write_text(site)
    config = folder / "nginx.conf"
    config.write_text(
        f"""
daemon off;
worker_processes 2;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ text/plain txt; application/json json; text/html html; text/css css;
             application/javascript js; }}
    default_type application/octet-stream;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/cinema.conf;
}}
"""
    )
    return config


def check_config(folder: Path, config: Path) -> None:
    assert NGINX is not None
    result = subprocess.run(
        [NGINX, "-t", "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(
    command: list[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def launch_nginx(upstream: str) -> Nginx:
    # World-readable: nginx's workers run as an unprivileged user when we are root.
    folder = Path(tempfile.mkdtemp(prefix="cinema-nginx-"))
    folder.chmod(0o755)
    port = free_port()
    try:
        config = nginx_config(folder, upstream, port)
        check_config(folder, config)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    assert NGINX is not None
    # stdout is the JSON access log
    command = [NGINX, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")]
    return Nginx(port, folder, spawn(command, Path(os.devnull)))


async def accepts_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


@pytest.fixture
def start_nginx() -> Iterator[object]:
    started: list[Nginx] = []

    async def start(upstream: str) -> Nginx:
        proxy = launch_nginx(upstream)
        started.append(proxy)

        async def listening() -> bool:
            assert proxy.process.poll() is None, proxy.log()
            return await accepts_connections(proxy.port)

        await wait_for(listening, within=10)
        return proxy

    yield start
    for proxy in started:
        stop(proxy.process, signal.SIGQUIT)  # graceful: finish open requests, then exit
        shutil.rmtree(proxy.folder, ignore_errors=True)


# --- the proxy itself, against an upstream that shows what it received ----------------------------


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {k: request.headers.get(k) for k in ("X-Real-IP", "X-Forwarded-For", "X-Request-ID")}
    return web.json_response({"path": request.path, "headers": headers, "body_bytes": len(body)})


@pytest.fixture
async def echo_upstream() -> AsyncIterator[str]:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"127.0.0.1:{server.port}"
    await server.close()


@needs_nginx
async def test_nginx_passes_real_client_ip_request_id_and_limits_bodies(start_nginx, echo_upstream):
    proxy = await start_nginx(echo_upstream)
    async with aiohttp.ClientSession() as session:
        # a forged X-Forwarded-For is replaced by the address that really connected
        async with session.get(
            proxy.url + "/api/movies/", headers={"X-Forwarded-For": "6.6.6.6"}
        ) as resp:
            seen = await resp.json()
        assert resp.status == 200
        assert seen["headers"]["X-Real-IP"] == "127.0.0.1"
        assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
        generated = seen["headers"]["X-Request-ID"]
        assert generated and re.fullmatch(r"[0-9a-f]{32}", generated)

        async with session.get(proxy.url + "/health", headers={"X-Request-ID": "abc-123"}) as resp:
            assert (await resp.json())["headers"]["X-Request-ID"] == "abc-123"

        # a body under the limit goes through whole; one over it stops at nginx, in the API's shape
        async with session.post(proxy.url + "/api/bookings/", data=b"x" * 500_000) as resp:
            assert resp.status == 200
            assert (await resp.json())["body_bytes"] == 500_000
        async with session.post(proxy.url + "/api/bookings/", data=b"x" * 2_000_000) as resp:
            assert resp.status == 413
            assert (await resp.json(content_type=None))["error"]["code"] == "payload_too_large"

        # static files come from disk; a missing one falls through to the API
        async with session.get(proxy.url + "/robots.txt") as resp:
            assert resp.status == 200
            assert "Disallow: /api/" in await resp.text()
        async with session.get(proxy.url + "/static/robots.txt") as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"].startswith("max-age=")
        async with session.get(proxy.url + "/static/not-on-disk.js") as resp:
            assert (await resp.json())["path"] == "/static/not-on-disk.js"
        if SWAGGER_UI.is_dir():  # Swagger UI's files come from disk as well
            async with session.get(proxy.url + "/docs/static/swagger-ui.css") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/css"
        # the web app's pages and modules come from disk, revalidated on every load
        for path, kind in (
            ("/", "text/html"),
            ("/staff/", "text/html"),
            ("/app/app.css", "text/css"),
        ):
            async with session.get(proxy.url + path) as resp:
                assert resp.status == 200, path
                assert resp.headers["Content-Type"].startswith(kind), path
                assert resp.headers["Cache-Control"] == "no-cache", path
        async with session.get(proxy.url + "/docs") as resp:  # the page itself is the API's
            assert (await resp.json())["path"] == "/docs"

        # /metrics is for Prometheus inside the network, never passed on from outside
        async with session.get(proxy.url + "/metrics") as resp:
            assert resp.status == 404
            assert (await resp.json(content_type=None))["error"]["code"] == "not_found"


@needs_nginx
async def test_nginx_answers_json_when_the_api_is_down(start_nginx):
    proxy = await start_nginx(f"127.0.0.1:{free_port()}")  # nothing listens there
    async with aiohttp.ClientSession() as session, session.get(proxy.url + "/health") as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert (await resp.json(content_type=None))["error"]["code"] == "unavailable"


# --- the whole stack: migrate, web with two processes, nginx ------------------------------------


@dataclass
class Stack:
    api: ApiClient
    database_url: str
    users: Users


def run_env(database_url: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "JWT_SECRET": JWT_SECRET,
        "DB_POOL_MAX": "20",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
async def stack(start_nginx, tmp_path) -> AsyncIterator[Stack]:
    base, _, _ = BASE_DATABASE_URL.rpartition("/")
    database_url = f"{base}/cinema_test_{RUN_ID}_compose"
    prefix = f"cinematest:{RUN_ID}:compose:"
    env = run_env(database_url, prefix)

    # the one-shot migration step (a fresh database: it must create it and apply everything)
    migrate_log = tmp_path / "migrate.log"
    migrate = spawn(compose_command("migrate"), migrate_log, env)
    assert migrate.wait(60) == 0, migrate_log.read_text()
    assert "applied" in migrate_log.read_text()

    port = free_port()
    log = tmp_path / "web.log"
    web_process = spawn(
        compose_command("web", host="127.0.0.1", port=str(port), workers="2"), log, env
    )
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        proxy = await start_nginx(f"127.0.0.1:{port}")
        users = Users(database_url)
        api = ApiClient(proxy.url, session, await users.one(staff=True))

        async def ready() -> bool:
            assert web_process.poll() is None, log.read_text()
            return (await api.get("/ready")).status == 200

        await wait_for(ready, within=30, interval=0.1)
        yield Stack(api, database_url, users)
    finally:
        await session.close()
        started = time.monotonic()
        stop(web_process)
        assert web_process.returncode == 0, log.read_text()
        assert time.monotonic() - started < 15, "web did not stop on SIGTERM"
        await drop_database(database_url)
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        client.close()


@needs_nginx
async def test_book_a_seat_through_nginx_in_front_of_two_processes(stack):
    api = stack.api
    screening = await api.new_screening()
    token = await api.new_user()  # register + token through nginx
    seat = screening.seat_ids[0]
    booked = await api.book(token, screening.id, [seat])
    assert booked.status == 201, booked
    assert booked.body["status"] == "PENDING"
    assert (await api.get(f"/api/bookings/{booked.body['id']}/", token=token)).status == 200
    assert (await api.seat_statuses(screening.id))[seat] != "AVAILABLE"
    again = await api.book(await api.new_user(), screening.id, [seat])
    assert again.status == 409
    assert again.body["error"]["code"] == "seats_unavailable"


@needs_nginx
async def test_race_through_nginx_exactly_one_wins(stack):
    api = stack.api
    screening = await api.new_screening()
    tokens = await stack.users.create(100)
    seat = screening.seat_ids[0]
    replies = await race([api], tokens, screening.id, [[seat]] * 100)
    assert statuses(replies) == {201: 1, 409: 99}
    conn = await asyncpg.connect(stack.database_url)
    try:
        live = await conn.fetchval(
            "SELECT count(*) FROM reservations WHERE screening_id = $1 AND status <> 'CANCELLED'",
            screening.id,
        )
    finally:
        await conn.close()
    assert live == 1


@needs_nginx
async def test_live_seat_status_streams_through_nginx(stack):
    """The API frames the stream's chunks itself (cinema/api/events.py); nginx must parse them
    and pass each event on at once (proxy_buffering off), not when the stream ends."""
    api = stack.api
    screening = await api.new_screening()
    stream = await open_stream(api.session, api.base_url, screening.id)
    try:
        await stream.until(lambda s: bool(s.seats), what="the first resync through nginx")
        seats = screening.seat_ids[1:3]
        booked = await api.book(await api.new_user(), screening.id, seats)
        assert booked.status == 201, booked
        await stream.until(
            lambda s: all(s.seats[x] == "LOCKED" for x in seats), within=2, what="the hold"
        )
        assert stream.seats == await api.seat_statuses(screening.id)  # PostgreSQL
    finally:
        stream.close()


# --- the compose file --------------------------------------------------------------------------


def test_compose_wiring():
    services = COMPOSE["services"]
    assert set(services) >= {"db", "redis", "migrate", "web", "worker", "nginx"}
    assert services["db"]["image"].startswith("postgres:16")
    assert "healthcheck" in services["db"] and services["db"]["volumes"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["env_file"] == ".env"
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["command"] == ["cinema", "worker"]
    assert "--workers" in services["web"]["command"]
    # every setting the app reads is documented in .env.example, which .env is copied from
    example = (ROOT / ".env.example").read_text()
    for variable in ("POSTGRES_PASSWORD", "WEB_WORKERS", "NGINX_HTTP_PORT"):
        assert re.search(rf"^{variable}=", example, re.M), variable


def test_compose_requires_a_postgres_password():
    """No silent default: every use of POSTGRES_PASSWORD fails when it is unset or empty, and
    the example file leaves it empty (a copied example must not run with a known password)."""
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert uses and all(use.startswith(":?") for use in uses), uses
    db = COMPOSE["services"]["db"]["environment"]["POSTGRES_PASSWORD"]
    assert db.startswith("${POSTGRES_PASSWORD:?"), db
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^POSTGRES_PASSWORD=$", example, re.M)


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True)
    if docker and plugin and plugin.returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_config_parses(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    example = (ROOT / ".env.example").read_text()
    password = f"POSTGRES_PASSWORD={secrets.token_urlsafe(16)}"
    (tmp_path / ".env").write_text(re.sub(r"^POSTGRES_PASSWORD=$", password, example, flags=re.M))
    result = subprocess.run(
        [*cli, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_postgres_password(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")  # copied, password left empty
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    result = subprocess.run(
        [*cli, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr
