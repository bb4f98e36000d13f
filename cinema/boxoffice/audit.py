"""The audit log as admins read it: who did what to which booking or screening, when, from
where, with the state before and after (written by PostgreSQL triggers: db/014_b_audit.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class AuditFilter:
    booking_id: int | None = None
    actor_id: int | None = None
    since: datetime | None = None
    screening_id: int | None = None
    action: str | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor_id: int | None
    actor_role: str
    action: str
    booking_id: int | None
    screening_id: int | None
    target: str
    target_id: int | None
    request_id: str | None
    client: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditStore(Protocol):
    async def entries(self, search: AuditFilter) -> list[AuditEntry]:
        """Entries matching every given filter, newest first."""
        ...


class AuditTrail:
    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def entries(self, search: AuditFilter) -> list[AuditEntry]:
        return await self._store.entries(search)
