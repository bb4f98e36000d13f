"""Everyone wants the same few seats (LOCUST_HOT_SEATS, default 4) of one screening, with no
think time. 201 and 409 are both the promised answers; at the end each seat must have been
won at most once (nobody cancels here), otherwise the run exits 1.

    locust -f locustfiles/hot_seat.py --headless -u 50 -r 50 -t 10s \
        --host http://127.0.0.1:8000 --json-file hot-seat-locust.json
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

from _common import prepare_screening, register
from locust import HttpUser, constant, events, task

STATE: dict[str, Any] = {"winners": Counter()}


@events.test_start.add_listener
def _prepare(environment: Any, **_: Any) -> None:
    import requests

    screening_id = prepare_screening(environment.host)
    seats = requests.get(f"{environment.host}/api/screenings/{screening_id}/seats/", timeout=10)
    free = [s["id"] for s in seats.json()["seats"] if s["status"] == "AVAILABLE"]
    STATE["screening_id"] = screening_id
    STATE["seats"] = free[: int(os.environ.get("LOCUST_HOT_SEATS", "4"))]


@events.quitting.add_listener
def _judge(environment: Any, **_: Any) -> None:
    winners: Counter[int] = STATE["winners"]
    twice = {seat: n for seat, n in winners.items() if n > 1}
    print(f"hot seats won: {dict(winners)} (each seat at most once: {not twice})")
    if twice:
        environment.process_exit_code = 1


class Fan(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {register(self.client)}"}

    @task
    def want_the_hot_seat(self) -> None:
        seat = random.choice(STATE["seats"])
        with self.client.post(
            "/api/bookings/",
            json={"screening_id": STATE["screening_id"], "seat_ids": [seat]},
            headers=self.headers,
            name="/api/bookings/ [hot]",
            catch_response=True,
        ) as reply:
            if reply.status_code == 201:
                STATE["winners"][seat] += 1
                reply.success()
            elif reply.status_code == 409:
                reply.success()
            elif reply.status_code == 429:
                reply.success()  # RATE_LIMIT_BOOKINGS_PER_MINUTE: the answer to hammering
            else:
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")
