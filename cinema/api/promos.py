"""Promo codes under /api/admin/promo-codes/ (staff only)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinema.api.io import Inputs, json_response, path_id
from cinema.api.keys import PROMOS
from cinema.api.schemas import PageQuery, PromoCodeIn
from cinema.pricing.model import NewPromoCode, PromoCode, PromoKind
from cinema.pricing.service import normalize_code


def promo_json(promo: PromoCode) -> dict[str, Any]:
    return {
        "id": promo.id,
        "code": promo.code,
        "kind": promo.kind.value,
        "value": format(promo.value, "f"),
        "max_uses": promo.max_uses,
        "max_uses_per_customer": promo.max_uses_per_customer,
        "uses": promo.uses,
        "valid_from": None if promo.valid_from is None else promo.valid_from.isoformat(),
        "valid_until": None if promo.valid_until is None else promo.valid_until.isoformat(),
        "screening_ids": None if promo.screening_ids is None else sorted(promo.screening_ids),
        "ticket_types": None if promo.ticket_types is None else sorted(promo.ticket_types),
        "active": promo.active,
        "created_at": promo.created_at.isoformat(),
    }


async def create_promo_code(request: web.Request, given: Inputs[PromoCodeIn, None]) -> web.Response:
    body = given.body
    promo = await request.app[PROMOS].create(
        NewPromoCode(
            code=normalize_code(body.code),
            kind=PromoKind(body.kind),
            value=body.value,
            max_uses=body.max_uses,
            max_uses_per_customer=body.max_uses_per_customer,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            screening_ids=None if body.screening_ids is None else frozenset(body.screening_ids),
            ticket_types=None if body.ticket_types is None else frozenset(body.ticket_types),
        )
    )
    return json_response(promo_json(promo), status=201)


async def list_promo_codes(request: web.Request, given: Inputs[None, PageQuery]) -> web.Response:
    query = given.query
    promos = await request.app[PROMOS].promos(query.limit, query.offset)
    return json_response([promo_json(p) for p in promos])


async def get_promo_code(request: web.Request, given: Inputs[None, None]) -> web.Response:
    return json_response(promo_json(await request.app[PROMOS].promo(path_id(request))))


async def deactivate_promo_code(request: web.Request, given: Inputs[None, None]) -> web.Response:
    return json_response(promo_json(await request.app[PROMOS].deactivate(path_id(request))))
