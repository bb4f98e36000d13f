"""The OpenAPI 3.1 document, generated from the route table and the very pydantic models the
handlers validate with, and Swagger UI at /docs served from files shipped in this package."""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from cinema.api import schemas as s
from cinema.api.routes import Route

REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerAuth"
STATIC_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
_PARAM = re.compile(r"\{(\w+)(?::([^{}]*))?\}")


def _package_version() -> str:
    try:
        return version("cinemacore")
    except PackageNotFoundError:
        return "0.0.0"


def openapi_path(path: str) -> str:
    r"""aiohttp's "/api/bookings/{id:\d+}/" -> OpenAPI's "/api/bookings/{id}/"."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _path_parameters(path: str) -> list[dict[str, Any]]:
    params = []
    for name, pattern in _PARAM.findall(path):
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": 1, "maximum": s.MAX_ID}
            if pattern == r"\d+"
            else {"type": "string"}
        )
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation", ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _header_parameters(route: Route) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": TypeAdapter(kind).json_schema(ref_template=REF_TEMPLATE),
        }
        for name, kind in route.headers
    ]


def _links(route: Route, routes: tuple[Route, ...]) -> dict[str, Any]:
    """A created resource's id feeds the routes that read or change it ("/api/admin/movies/"
    creates what "/api/movies/{id}/" reads), so clients and stateful testers can follow."""
    if route.method != "POST" or route.response is None:
        return {}
    if "id" not in route.response.model_fields:
        return {}
    prefixes = {route.path, route.path.replace("/api/admin/", "/api/", 1)}
    links: dict[str, Any] = {}
    for target in routes:
        path = openapi_path(target.path)
        if any(path.startswith(p + "{id}") for p in prefixes):
            links[target.operation_id] = {
                "operationId": target.operation_id,
                "parameters": {"id": "$response.body#/id"},
            }
    return links


def error_statuses(route: Route) -> list[int]:
    """The route's own errors plus those every route of its kind can answer."""
    statuses = set(route.errors) | {503}
    if route.body is not None:
        statuses |= {400, 413, 415}
    if route.query is not None:
        statuses.add(400)
    if route.access != "public":
        statuses.add(401)
    if route.access in ("box_office", "admin", "staff"):
        statuses.add(403)
    if route.limit is not None:
        statuses.add(429)
    return sorted(statuses)


Refs = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]  # models_json_schema: model -> $ref


def _responses(route: Route, routes: tuple[Route, ...], refs: Refs) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(route.response, "serialization")]}}
    for media_type in route.alternatives:
        ok.setdefault("content", {})[media_type] = {"schema": {"type": "string"}}
    if route.stream:
        ok["description"] = route.stream
        ok["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    links = _links(route, routes)
    if links:
        ok["links"] = links
    responses: dict[str, Any] = {str(route.status): ok}
    for status in error_statuses(route):
        error: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": refs[(s.ErrorOut, "serialization")]}},
        }
        if status == 429:
            error["headers"] = {
                "Retry-After": {
                    "description": "Seconds until the limit's window resets",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        responses[str(status)] = error
    return responses


def _operation(route: Route, routes: tuple[Route, ...], refs: Refs) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [_tag(route.path)],
        "responses": _responses(route, routes, refs),
    }
    parameters = _path_parameters(route.path) + _header_parameters(route)
    if route.query is not None:
        parameters += _query_parameters(route.query)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
        }
    if route.access != "public":
        operation["security"] = [{SECURITY_SCHEME: []}]
    return operation


def build_openapi(routes: tuple[Route, ...], title: str = "CinemaCore API") -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(s.ErrorOut, "serialization")]
    for route in routes:
        if route.body is not None:
            wanted.append((route.body, "validation"))
        if route.response is not None:
            wanted.append((route.response, "serialization"))
    refs, definitions = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, routes, refs)
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": _package_version(),
            "description": (
                "Cinema seat booking. Errors always have the shape "
                '`{"error": {"code", "message", ...}}`. Every response carries an X-Request-ID.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _tag(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "api" and not p.startswith("{")]
    if parts and parts[0] == "admin":
        return "admin"
    return parts[0] if parts else "service"


_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>CinemaCore API</title>
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/api/openapi.json",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      validatorUrl: null,
      deepLinking: true,
    });
  </script>
</body>
</html>
"""

OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=_DOCS_PAGE, content_type="text/html")


def add_openapi_routes(app: web.Application, routes: tuple[Route, ...]) -> None:
    app[OPENAPI_DOCUMENT] = orjson.dumps(build_openapi(routes))
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/", docs_page)
    app.router.add_static("/docs/static", STATIC_DIR)
