"""Buyers during an onsale: list screenings, read the seat map, book 1-4 free seats, sometimes
cancel, with think times. 409 (someone was faster) is an expected answer, not a failure.

    locust -f locustfiles/onsale.py --headless -u 50 -r 50 -t 10s \
        --host http://127.0.0.1:8000 --json-file onsale-locust.json

See locustfiles/_common.py for the environment variables (staff account or screening id).
"""

from __future__ import annotations

import random
from typing import Any

from _common import prepare_screening, register
from locust import HttpUser, between, events, task

SCREENING: dict[str, int] = {}


@events.test_start.add_listener
def _prepare(environment: Any, **_: Any) -> None:
    SCREENING["id"] = prepare_screening(environment.host)


class Buyer(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.screening_id = SCREENING.get("id") or prepare_screening(self.host)
        self.headers = {"Authorization": f"Bearer {register(self.client)}"}
        self.bookings: list[int] = []

    @task(2)
    def browse(self) -> None:
        self.client.get("/api/screenings/", params={"limit": 20}, name="/api/screenings/")

    @task(6)
    def pick_and_book(self) -> None:
        path = f"/api/screenings/{self.screening_id}/seats/"
        seat_map = self.client.get(path, name="/api/screenings/[id]/seats/").json()
        free = [s["id"] for s in seat_map["seats"] if s["status"] == "AVAILABLE"]
        if not free:
            return
        seats = random.sample(free, min(len(free), random.randint(1, 4)))
        with self.client.post(
            "/api/bookings/",
            json={"screening_id": self.screening_id, "seat_ids": seats},
            headers=self.headers,
            name="/api/bookings/",
            catch_response=True,
        ) as reply:
            if reply.status_code == 201:
                self.bookings.append(reply.json()["id"])
                reply.success()
            elif reply.status_code in (409, 429):
                reply.success()  # lost the race for a seat, or rate-limited: promised answers
            else:
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")

    @task(1)
    def cancel_one(self) -> None:
        if not self.bookings or random.random() > 0.3:
            return
        booking_id = self.bookings.pop(random.randrange(len(self.bookings)))
        self.client.delete(
            f"/api/bookings/{booking_id}/", headers=self.headers, name="/api/bookings/[id]/"
        )
