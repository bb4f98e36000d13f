"""Stripe deliveries to POST /api/webhooks/stripe/: payment_intent.succeeded events signed
with STRIPE_WEBHOOK_SECRET the way Stripe signs them (header `Stripe-Signature:
t=TS,v1=HMAC_SHA256(secret, f"{TS}.{body}")`), about a third of them duplicates of an
earlier delivery (same event id, as Stripe retries), and a few with a forged signature,
which must be refused with 400.

    STRIPE_WEBHOOK_SECRET=whsec_... locust -f locustfiles/webhooks.py --headless \
        -u 50 -r 50 -t 10s --host http://127.0.0.1:8000 --json-file webhooks-locust.json

LOCUST_PAYMENT_INTENTS=pi_1,pi_2 sends events for those intents (e.g. of real PENDING
bookings); otherwise ids the server does not know, which it must acknowledge and ignore.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import secrets
import time

from locust import HttpUser, between, task

SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
INTENTS = [i for i in os.environ.get("LOCUST_PAYMENT_INTENTS", "").split(",") if i]
SENT: list[bytes] = []  # earlier deliveries, replayed as duplicates
PATH = "/api/webhooks/stripe/"


def signature(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    signed = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={signed}"


def event(intent_id: str) -> bytes:
    now = int(time.time())
    return json.dumps(
        {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": now,
            "type": "payment_intent.succeeded",
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {
                "object": {
                    "id": intent_id,
                    "object": "payment_intent",
                    "amount": 950,
                    "currency": "eur",
                    "status": "succeeded",
                    "created": now,
                    "metadata": {},
                }
            },
        },
        separators=(",", ":"),
    ).encode()


class Stripe(HttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        if not SECRET:
            raise SystemExit("set STRIPE_WEBHOOK_SECRET to the server's webhook secret")

    def _deliver(self, body: bytes, header: str, name: str, expect: int | None) -> None:
        headers = {"Content-Type": "application/json", "Stripe-Signature": header}
        with self.client.post(
            PATH, data=body, headers=headers, name=name, catch_response=True
        ) as reply:
            ok = (
                reply.status_code == expect
                if expect is not None
                else 200 <= reply.status_code < 300
            )
            if ok:
                reply.success()
            else:
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")

    @task(6)
    def new_event(self) -> None:
        intent = random.choice(INTENTS) if INTENTS else f"pi_locust_{secrets.token_hex(8)}"
        body = event(intent)
        SENT.append(body)
        del SENT[:-1000]
        self._deliver(body, signature(body), f"{PATH} [new]", None)

    @task(3)
    def duplicate(self) -> None:
        if SENT:
            body = random.choice(SENT)
            self._deliver(body, signature(body), f"{PATH} [duplicate]", None)

    @task(1)
    def forged(self) -> None:
        body = event(f"pi_forged_{secrets.token_hex(4)}")
        self._deliver(body, signature(body, secret="whsec_wrong"), f"{PATH} [forged]", 400)
