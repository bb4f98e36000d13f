"""The OpenAPI document is valid, covers every route, and holds against a Schemathesis run;
Swagger UI is served from local files."""

import asyncio
import os
import sys
from pathlib import Path

from openapi_spec_validator import validate

from cinema.api.openapi import STATIC_DIR, openapi_path
from tests.payment_fixtures import STRIPE_KEY, WEBHOOK_SECRET
from tests.test_serve import servers  # noqa: F401  (fixture)

ST = Path(sys.executable).with_name("st")
# Bounded for CI (about 15 s here); raise both for a deeper hunt.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "1")


async def test_document_is_valid_openapi_3_1(api):
    reply = await api.get("/api/openapi.json")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    document = reply.body
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_document_covers_every_route(api, make_api):
    from cinema.app import init_app
    from cinema.settings import Settings
    from tests.conftest import JWT_SECRET

    document = (await api.get("/api/openapi.json")).body
    app = init_app(Settings(_env_file=None, jwt_secret=JWT_SECRET))
    served = set()
    for route in app.router.routes():
        info = route.resource.canonical if route.resource else ""
        if route.method in ("HEAD", "*") or not info:
            continue
        if info.startswith("/docs") or info in ("/metrics", "/api/openapi.json"):
            continue
        if info in ("/", "/staff", "/staff/") or info.startswith("/app"):
            continue  # the web app's pages and files (cinema/api/webapp.py), not the API
        # every path is served with and without its trailing slash; one spelling is documented
        served.add((route.method.lower(), openapi_path(info).rstrip("/")))
    documented = {(m, p.rstrip("/")) for p, ops in document["paths"].items() for m in ops}
    assert served == documented


async def test_errors_and_auth_are_documented(api):
    document = (await api.get("/api/openapi.json")).body
    create = document["paths"]["/api/bookings/"]["post"]
    assert create["security"] == [{"bearerAuth": []}]
    for status in ("400", "401", "404", "409", "422", "429"):
        schema = create["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorOut"}
    assert "Retry-After" in create["responses"]["429"]["headers"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BookingIn"
    }
    [key] = [p for p in create["parameters"] if p["in"] == "header"]
    assert key["name"] == "Idempotency-Key"
    one = document["paths"]["/api/bookings/{id}/"]["get"]
    assert one["parameters"][0] == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    }
    assert "security" not in document["paths"]["/api/movies/"]["get"]
    # a created booking's id leads to the routes that read and cancel it
    assert set(create["responses"]["201"]["links"]) == {
        "get_booking",
        "cancel_booking",
        "test_payment",
    }


async def test_swagger_ui_is_served_from_local_files(api):
    page = await api.get("/docs")
    assert page.status == 200
    assert "text/html" in page.headers["Content-Type"]
    assert "http://" not in page.body and "https://" not in page.body  # nothing from the net
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/static/{name}" in page.body
        reply = await api.get(f"/docs/static/{name}")
        assert reply.status == 200
    assert (STATIC_DIR / "VERSION").read_text().startswith("5.")


async def test_schemathesis_finds_no_server_error_and_no_schema_break(
    servers,  # noqa: F811
    users,
    tmp_path,
    localstripe_url,
):
    # Payments on (localstripe), as in production: bookings create intents and the webhook
    # endpoint checks signatures instead of answering 503 "payments not configured".
    server = servers(
        workers=1,
        STRIPE_SECRET_KEY=STRIPE_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=localstripe_url,
    )
    staff = await users.one(staff=True)
    proc = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        f"{server.url}/api/openapi.json",
        "--checks",
        "all",
        # Schema-valid but refused is fine here: some rules are beyond JSON Schema (a seat
        # listed twice, a row of gaps only, a screening in the past, NUL in a password).
        # use_after_free: DELETE /api/bookings/{id}/ cancels; the booking stays readable with
        # status CANCELLED (the customer's history), so a 200 after it is by design.
        "--exclude-checks",
        "positive_data_acceptance,use_after_free",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        # One worker: with two threads, Hypothesis's ast.parse failed here (1 run in 5) with
        # CPython 3.11's "SystemError: AST constructor recursion depth mismatch" (the family
        # of python/cpython#106905), a tester crash, not a finding about the API.
        # The live stream never ends by itself: a valid id would wait out the timeout.
        "--exclude-path-regex",
        "/events",
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "-H",
        f"Authorization: Bearer {staff}",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text + "\n--- server log tail ---\n" + server.output()[-5000:]
