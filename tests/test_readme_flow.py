"""The README's "whole flow with curl" block, run as written (bash, curl, jq) against a real
`cinema serve` with the demo's staff account: if the API and the README drift apart, this
fails. Its own database, so the README's fixed emails meet no other test's accounts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cinema.store.migrations import migrate
from cinema.store.pool import drop_database
from tests.conftest import BASE_DATABASE_URL, JWT_SECRET
from tests.processes import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DEMO_STAFF = ("staff@cinema.example", "staff-password")  # what the README's block logs in as


def readme_block(heading: str) -> str:
    """The first ```sh block after `heading` in README.md."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(heading) :]
    found = re.search(r"```sh\n(.*?)```", after, re.S)
    assert found is not None, f"no sh block after {heading!r}"
    return found.group(1)


@pytest.fixture
def own_database() -> Iterator[str]:
    base, _, _ = BASE_DATABASE_URL.rpartition("/")
    url = f"{base}/cinema_readme_{secrets.token_hex(4)}"
    asyncio.run(migrate(url))
    yield url
    asyncio.run(drop_database(url))


def test_the_readme_curl_flow_books_and_cancels(tmp_path: Path, own_database: str) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("needs curl and jq")
    subprocess.run(
        [sys.executable, "-m", "cinema", "createuser", "--staff", "--email", DEMO_STAFF[0],
         "--password", DEMO_STAFF[1]],
        env={**os.environ, "DATABASE_URL": own_database, "JWT_SECRET": JWT_SECRET},
        cwd=tmp_path,  # no stray .env is read
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    server = ServerProcess(
        tmp_path, own_database, f"cinematest:readme:{secrets.token_hex(4)}:", STRIPE_SECRET_KEY=""
    )
    try:
        server.wait_ready()
        script = readme_block("### The whole flow with curl")
        assert "API=http://127.0.0.1:8000\n" in script
        script = script.replace("API=http://127.0.0.1:8000\n", f"API={server.url}\n", 1)
        # Each answer on a line of its own, so every one can be read back.
        script = "set -euo pipefail\n" + script.replace("curl -s ", "curl -s -w '\\n' ")
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stderr[-2000:]
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith(("{", "["))]
    booking = next(a for a in answers if isinstance(a, dict) and a.get("status") == "PENDING")
    assert len(booking["seat_ids"]) == 2 and booking["amount"] == "25.00", booking
    mine = next(a for a in answers if isinstance(a, list) and a and "reference" in a[0])
    assert [b["id"] for b in mine] == [booking["id"]]
    cancelled = answers[-1]
    assert cancelled["id"] == booking["id"] and cancelled["status"] == "CANCELLED", cancelled
