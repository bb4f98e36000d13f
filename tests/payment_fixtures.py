"""Real collaborators for payment tests: a localstripe server (a stateful Stripe fake that
signs and sends webhooks), an SMTP server on loopback (aiosmtpd), and signed event helpers."""

from __future__ import annotations

import email
import email.policy
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from cinema.app import init_app
from tests.client import ApiClient, wait_for
from tests.conftest import make_settings

WEBHOOK_SECRET = "whsec_test_" + secrets.token_hex(16)
STRIPE_KEY = "sk_test_cinemacore"
WEBHOOK_PATH = "/api/webhooks/stripe/"
CARD_OK = "4242424242424242"
# Stripe's 4000000000000002 is declined when charged; localstripe declines it only when
# attached to a customer, and declines 4000000000000341 when charged (Stripe's own meaning
# for that number: attaches fine, then the charge fails). That is the decline to test here.
CARD_DECLINED = "4000000000000341"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    port = free_port()
    binary = Path(sys.executable).with_name("localstripe")
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class _Collect:
    def __init__(self, refuse_first: int = 0) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.refusals_left = refuse_first
        self.refuse_only: str | None = None
        self.refused = 0

    def _refuses(self, message: EmailMessage) -> bool:
        if self.refusals_left <= 0:
            return False
        if self.refuse_only is not None and message["X-Booking-Reference"] != self.refuse_only:
            return False
        self.refusals_left -= 1
        self.refused += 1
        return True

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            if self._refuses(message):
                return "451 4.3.0 try again later"
            self.messages.append(message)
        return "250 OK"


class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives."""

    def __init__(self, refuse_first: int = 0) -> None:
        """`refuse_first`: answer the first N messages with a temporary failure (451)."""
        self._handler = _Collect(refuse_first)
        self.port = free_port()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def refuse_only(self, reference: str) -> None:
        """Spend the refusals on this booking's mail alone (a worker's start-up sweep may
        send other tests' leftover tickets through the same server)."""
        with self._handler.lock:
            self._handler.refuse_only = reference

    def stop(self) -> None:
        self._controller.stop()

    @property
    def refused(self) -> int:
        with self._handler.lock:
            return self._handler.refused

    def for_reference(self, reference: str) -> list[EmailMessage]:
        with self._handler.lock:
            return [m for m in self._handler.messages if m["X-Booking-Reference"] == reference]

    async def wait_for(self, reference: str, within: float = 15.0) -> EmailMessage:
        async def arrived() -> bool:
            return bool(self.for_reference(reference))

        await wait_for(arrived, within)
        return self.for_reference(reference)[0]


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


class LocalStripe:
    """The customer's side of a payment, and a look at Stripe's state, through localstripe."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self._session = session
        self._http = stripe.AIOHTTPClient()
        self.client = stripe.StripeClient(
            STRIPE_KEY, base_addresses={"api": base_url}, http_client=self._http
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def send_webhooks_to(self, url: str) -> None:
        async with self._session.post(
            f"{self.base_url}/_config/webhooks/cinemacore",
            data={"url": url, "secret": WEBHOOK_SECRET},
        ) as resp:
            assert resp.status == 200, await resp.text()

    async def pay(self, intent_id: str, card: str) -> str:
        """Attach a card, then confirm (localstripe cannot confirm with a payment_method
        argument). Returns the intent's status, or the card error's code."""
        method = await self.client.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        await self.client.v1.payment_intents.update_async(intent_id, {"payment_method": method.id})
        try:
            intent = await self.client.v1.payment_intents.confirm_async(intent_id)
        except stripe.CardError as exc:
            return str(exc.code)
        return str(intent.status)

    async def intent(self, intent_id: str) -> Any:
        return await self.client.v1.payment_intents.retrieve_async(intent_id)

    async def refunds(self, intent_id: str) -> list[Any]:
        listed = await self.client.v1.refunds.list_async({"payment_intent": intent_id})
        return list(listed.data)


@dataclass
class PayApi:
    """A running API with payments on, its app (to shut it down and drain its background
    jobs), and a client."""

    client: ApiClient
    app: web.Application
    server: TestServer

    @property
    def webhook_url(self) -> str:
        return str(self.server.make_url(WEBHOOK_PATH))


PayApiFactory = Callable[..., Awaitable[PayApi]]


@pytest.fixture
async def stripe_fake(localstripe_url: str) -> AsyncIterator[LocalStripe]:
    async with aiohttp.ClientSession() as session:
        fake = LocalStripe(localstripe_url, session)
        try:
            yield fake
        finally:
            await fake.close()


@pytest.fixture
async def make_pay_api(
    database_url: str, redis_prefix: str, users: Any, localstripe_url: str, smtp: SmtpSink
) -> AsyncIterator[PayApiFactory]:
    """Start an API wired to localstripe and the SMTP sink (overrides go to the settings)."""
    started: list[tuple[TestServer, aiohttp.ClientSession]] = []
    staff = await users.one(staff=True)

    async def factory(**overrides: Any) -> PayApi:
        values: dict[str, Any] = {
            "stripe_secret_key": STRIPE_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": localstripe_url,
            "stripe_timeout_seconds": 5,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
        }
        values.update(overrides)
        url = values.pop("database_url", database_url)  # e.g. through PgBouncer
        app = init_app(make_settings(url, redis_prefix, **values))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        started.append((server, session))
        return PayApi(ApiClient(str(server.make_url("/")), session, staff), app, server)

    yield factory
    for server, session in started:
        await session.close()
        await server.close()


@pytest.fixture
async def pay_api(make_pay_api: PayApiFactory, stripe_fake: LocalStripe) -> PayApi:
    """An API that receives localstripe's own webhooks."""
    api = await make_pay_api()
    await stripe_fake.send_webhooks_to(api.webhook_url)
    return api


@pytest.fixture
async def quiet_api(make_pay_api: PayApiFactory, stripe_fake: LocalStripe) -> PayApi:
    """An API that receives only the webhooks a test crafts (localstripe's go nowhere)."""
    await stripe_fake.send_webhooks_to(f"http://127.0.0.1:{free_port()}/nowhere")
    return await make_pay_api()


def signed_event(
    event_type: str,
    intent_id: str,
    *,
    event_id: str | None = None,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    metadata: dict[str, str] | None = None,
    amount: int | None = None,
    currency: str | None = None,
) -> tuple[bytes, str]:
    """A Stripe event body and its Stripe-Signature header, signed by stripe-python. The
    intent carries `amount` and `currency` (lower case, as Stripe sends it) when given."""
    intent: dict[str, Any] = {
        "id": intent_id,
        "object": "payment_intent",
        "metadata": metadata or {},
    }
    if amount is not None:
        intent["amount"] = amount
    if currency is not None:
        intent["currency"] = currency.lower()
    body = json.dumps(
        {
            "id": event_id or f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": intent},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)
    return body.encode(), header


def paid_event(
    booking: dict[str, Any], event_type: str = "payment_intent.succeeded", **kwargs: Any
) -> tuple[bytes, str]:
    """A signed event for the booking's intent that pays the booking's amount in its currency
    (`amount=` or `currency=` override them)."""
    kwargs.setdefault("amount", booking["amount_minor"])
    kwargs.setdefault("currency", booking["currency"])
    return signed_event(event_type, booking["payment"]["payment_intent_id"], **kwargs)


async def deliver(api: ApiClient, body: bytes, header: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return await api.request("POST", WEBHOOK_PATH, data=body, headers=headers)


async def booking_of(api: ApiClient, token: str, booking_id: int) -> dict[str, Any]:
    reply = await api.get(f"/api/bookings/{booking_id}/", token=token)
    assert reply.status == 200, reply
    return dict(reply.body)


async def wait_status(
    api: ApiClient, token: str, booking_id: int, status: str, within: float = 15.0
) -> dict[str, Any]:
    async def reached() -> bool:
        return (await booking_of(api, token, booking_id))["status"] == status

    await wait_for(reached, within)
    return await booking_of(api, token, booking_id)
