"""The `cinema` command as an operator runs it: real processes, real database."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import asyncpg

from cinema.store.migrations import migration_files
from tests.conftest import JWT_SECRET


def cinema(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "JWT_SECRET": JWT_SECRET, **env}
    return subprocess.run(
        [sys.executable, "-m", "cinema", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # no .env file
    )


def test_missing_setting_is_one_clear_line():
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "cinema", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "configuration error: JWT_SECRET: is required"


def test_bad_setting_names_the_variable():
    result = cinema("migrate", HOLD_TTL_SECONDS="soon")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: HOLD_TTL_SECONDS:")


async def test_migrate_from_many_processes_at_once(database_url):
    base, _, _ = database_url.rpartition("/")
    url = f"{base}/{database_url.rpartition('/')[2]}_migrate"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cinema("migrate", DATABASE_URL=url), range(4)))
    try:
        assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
        expected = [p.name for p in migration_files()]
        applied = [r.stdout for r in results if f"applied {len(expected)}" in r.stdout]
        assert len(applied) == 1  # exactly one process applied the migrations
        conn = await asyncpg.connect(url)
        try:
            names = await conn.fetch("SELECT name FROM schema_migrations")
        finally:
            await conn.close()
        assert [r["name"] for r in names] == expected
    finally:
        from cinema.store.pool import drop_database

        await drop_database(url)


async def test_createuser_then_login(database_url, api):
    result = cinema(
        "createuser",
        "--email",
        "boss@example.com",
        "--password",
        "boss-password",
        "--staff",
        DATABASE_URL=database_url,
    )
    assert result.returncode == 0, result.stderr
    assert "staff" in result.stdout
    login = await api.post(
        "/api/auth/token", {"email": "boss@example.com", "password": "boss-password"}
    )
    assert login.status == 200
    movie = await api.post(
        "/api/admin/movies/",
        {"title": "Boss cut", "duration_minutes": 90},
        token=login.body["access_token"],
    )
    assert movie.status == 201
    again = cinema(
        "createuser",
        "--email",
        "boss@example.com",
        "--password",
        "x" * 10,
        DATABASE_URL=database_url,
    )
    assert again.returncode == 1
    assert "already registered" in again.stderr


def test_unreachable_database_is_one_line_not_a_traceback():
    result = cinema("migrate", DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot use PostgreSQL" in result.stderr
