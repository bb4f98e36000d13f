"""Who is acting: the audit log's actor (db/014_b_audit.sql), set once per request at the
HTTP edge (cinema/api/routes.py) and read by the store, which hands it to PostgreSQL in the
same transaction as the change (cinema/store/audit.py); the triggers write the records.

A context variable rather than a parameter on every service and store method: each write
path would otherwise need it threaded through, and one forgotten would still be recorded,
only as the system's. Code outside a request (the worker, the tools) acts as SYSTEM."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: int | None
    role: str  # customer, box_office, admin; anonymous, payment_provider, system
    request_id: str | None = None
    client: str | None = None  # the client's address (behind TRUSTED_PROXIES: the real one)

    def as_json(self) -> dict[str, Any]:
        return {
            "actor_id": self.user_id,
            "role": self.role,
            "request_id": self.request_id,
            "client": self.client,
        }


SYSTEM = Actor(None, "system")
ACTOR: ContextVar[Actor] = ContextVar("cinema_actor", default=SYSTEM)


def current_actor() -> Actor:
    return ACTOR.get()
