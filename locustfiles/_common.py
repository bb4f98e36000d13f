"""Shared by the locustfiles: accounts, a screening to sell, and the JSON shapes.

Environment (all optional):
  LOCUST_STAFF_EMAIL / LOCUST_STAFF_PASSWORD  a staff account (`cinema createuser --staff`):
      with it the test creates its own hall (LOCUST_SEATS seats, default 500) and screening;
      without it the soonest upcoming screening the API lists is used (e.g. `cinema demo`).
  LOCUST_SCREENING_ID  use this screening.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

PASSWORD = "locust-password-1"
SEATS_PER_ROW = 50


def register(client: Any) -> str:
    """A fresh customer (argon2 makes this deliberately slow: ~0.1 s of server CPU)."""
    email = f"locust-{secrets.token_hex(6)}@example.com"
    body = {"email": email, "password": PASSWORD}
    client.post("/api/auth/register", json=body, name="/api/auth/register")
    reply = client.post("/api/auth/token", json=body, name="/api/auth/token")
    return str(reply.json()["access_token"])


def _layout(seats: int) -> dict[str, Any]:
    rows, left = [], seats
    while left > 0:
        rows.append({"label": f"L{len(rows) + 1}", "seats": min(SEATS_PER_ROW, left)})
        left -= SEATS_PER_ROW
    return {"rows": rows}


def prepare_screening(host: str) -> int:
    """The screening every simulated user works on (created once, at test start)."""
    if os.environ.get("LOCUST_SCREENING_ID"):
        return int(os.environ["LOCUST_SCREENING_ID"])
    http = requests.Session()
    email = os.environ.get("LOCUST_STAFF_EMAIL")
    if not email:
        listed = http.get(f"{host}/api/screenings/", params={"limit": 1}, timeout=10).json()
        if not listed:
            raise SystemExit(
                "no upcoming screening: set LOCUST_STAFF_EMAIL/PASSWORD or LOCUST_SCREENING_ID"
            )
        return int(listed[0]["id"])
    login = {"email": email, "password": os.environ["LOCUST_STAFF_PASSWORD"]}
    token = http.post(f"{host}/api/auth/token", json=login, timeout=30).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}

    def create(path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = http.post(f"{host}{path}", json=body, headers=auth, timeout=30)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    movie = create("/api/admin/movies/", {"title": "Locust", "duration_minutes": 100})
    seats = int(os.environ.get("LOCUST_SEATS", "500"))
    hall = create("/api/admin/halls/", {"name": "Locust hall", "layout": _layout(seats)})
    screening = create(
        "/api/admin/screenings/",
        {
            "movie_id": movie["id"],
            "hall_id": hall["id"],
            "starts_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            "prices": {c: "9.50" for c in hall["categories"]},
            "currency": "eur",
        },
    )
    return int(screening["id"])
