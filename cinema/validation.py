"""Turning pydantic's error reports into one readable reason."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def _is_union_tag(part: object) -> bool:
    # pydantic names union members in error paths ("constrained-int", "list[...]", "SeatEntry").
    return isinstance(part, str) and (part[:1].isupper() or "[" in part or "-" in part)


MAX_PART = 64  # a path part can be a client's dict key of any length: never echo it whole


def _part(part: int | str) -> str:
    text = str(part)
    return text if len(text) <= MAX_PART else text[:MAX_PART] + "..."


def field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(_part(p) for p in loc if not _is_union_tag(p))


def describe(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    """The most specific reason (in a union, the deepest error is about what the client meant
    to send) and every error as {field, message}."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    details = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in errors]
    deepest = max(errors, key=lambda e: len(e["loc"]))
    where = field_path(deepest["loc"])
    return (f"{where}: {deepest['msg']}" if where else deepest["msg"]), details
