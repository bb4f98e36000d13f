"""Account types."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Who may do what (README, "Box office"): box office looks up bookings and checks
    tickets in; admin does everything (catalogue, promo codes, users, reports)."""

    CUSTOMER = "customer"
    BOX_OFFICE = "box_office"
    ADMIN = "admin"


# Each role may do everything the roles before it may.
_RANK = {Role.CUSTOMER: 0, Role.BOX_OFFICE: 1, Role.ADMIN: 2}


def role_allows(role: Role, needed: Role) -> bool:
    return _RANK[role] >= _RANK[needed]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    email: str
    password_hash: str
    role: Role = Role.CUSTOMER

    @property
    def is_staff(self) -> bool:
        return self.role is Role.ADMIN
