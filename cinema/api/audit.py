"""GET /api/admin/audit/: the audit log, newest first (admins only)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinema.api.io import Inputs, json_response
from cinema.api.keys import AUDIT
from cinema.api.schemas import AuditQuery
from cinema.boxoffice.audit import AuditEntry, AuditFilter


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor_id": entry.actor_id,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "booking_id": entry.booking_id,
        "screening_id": entry.screening_id,
        "target": entry.target,
        "target_id": entry.target_id,
        "request_id": entry.request_id,
        "client_address": entry.client,
        "before": entry.before,
        "after": entry.after,
    }


async def audit_log(request: web.Request, given: Inputs[None, AuditQuery]) -> web.Response:
    q = given.query
    entries = await request.app[AUDIT].entries(
        AuditFilter(
            booking_id=q.booking_id,
            actor_id=q.actor_id,
            since=q.since,
            screening_id=q.screening_id,
            action=q.action,
            limit=q.limit,
            offset=q.offset,
        )
    )
    return json_response([audit_json(e) for e in entries])
