"""Turning pydantic's error reports into short human reasons: no pydantic wording, no
regexes, no links, and never the client's input echoed back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def _is_union_tag(part: object) -> bool:
    # pydantic names union members in error paths ("constrained-int", "list[...]", "SeatEntry").
    return isinstance(part, str) and (part[:1].isupper() or "[" in part or "-" in part)


MAX_PART = 64  # a path part can be a client's dict key of any length: never echo it whole


def _part(part: int | str) -> str:
    text = str(part)
    return text if len(text) <= MAX_PART else text[:MAX_PART] + "..."


def field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(_part(p) for p in loc if not _is_union_tag(p))


def _bound(word: str, key: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda ctx: f"must be {word} {ctx.get(key, '')}".rstrip()


def _length(min_key: str, unit: str) -> Callable[[Mapping[str, Any]], str]:
    def text(ctx: Mapping[str, Any]) -> str:
        least = ctx.get(min_key)
        if least == 1:
            return "must not be empty"
        return f"must have at least {least} {unit}"

    return text


def _at_most(unit: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda ctx: f"must have at most {ctx.get('max_length')} {unit}"


def _value_error(ctx: Mapping[str, Any]) -> str:
    # Our own validators raise ValueError with a message written for clients.
    return str(ctx.get("error") or "is not valid")


_FIXED = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_unicode": "must be valid text",
    "string_pattern_mismatch": "is not in the expected format",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "datetime_type": "must be a date and time",
    "datetime_parsing": "must be a date and time such as 2030-01-31T20:00:00+01:00",
    "datetime_from_date_parsing": "must be a date and time such as 2030-01-31T20:00:00+01:00",
    "timezone_aware": "must include a time zone, e.g. +01:00 or Z",
    "enum": "is not one of the allowed values",
    "literal_error": "is not one of the allowed values",
    "union_tag_invalid": "is not one of the allowed kinds",
    "union_tag_not_found": "does not say which kind it is",
    "json_invalid": "is not valid JSON",
    "json_type": "is not valid JSON",
}

_BY_CONTEXT: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "greater_than_equal": _bound("at least", "ge"),
    "greater_than": _bound("greater than", "gt"),
    "less_than_equal": _bound("at most", "le"),
    "less_than": _bound("less than", "lt"),
    "string_too_short": _length("min_length", "characters"),
    "string_too_long": _at_most("characters"),
    "too_short": _length("min_length", "items"),
    "too_long": _at_most("items"),
    "decimal_max_places": lambda ctx: f"must have at most {ctx.get('decimal_places')} decimals",
    "decimal_max_digits": lambda ctx: f"must have at most {ctx.get('max_digits')} digits",
    "value_error": _value_error,
    "assertion_error": _value_error,
}


def human_message(error: ErrorDetails) -> str:
    """A short reason for one pydantic error, in our own words."""
    kind = error["type"]
    if kind in _FIXED:
        return _FIXED[kind]
    ctx = error.get("ctx") or {}
    if kind in _BY_CONTEXT:
        return _BY_CONTEXT[kind](ctx)
    return "is not valid"


def describe(exc: ValidationError, subject: str = "the body") -> tuple[str, list[dict[str, Any]]]:
    """The most specific reason (in a union, the deepest error is about what the client meant
    to send) and every error as {field, message}; `subject` names the whole value."""
    errors = exc.errors(include_url=False, include_input=False)
    details = [{"field": field_path(e["loc"]), "message": human_message(e)} for e in errors]
    deepest = max(range(len(errors)), key=lambda i: len(errors[i]["loc"]))
    where, message = details[deepest]["field"], details[deepest]["message"]
    return (f"{where}: {message}" if where else f"{subject} {message}"), details
