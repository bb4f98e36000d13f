"""Booking references and hold tokens."""

from __future__ import annotations

import hashlib
import secrets

# No 0/O or 1/I: references are read aloud at the box office.
_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
REFERENCE_LENGTH = 8


def new_reference() -> str:
    return "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def hold_token(user_id: int, idempotency_key: str | None) -> str:
    """The value stored in a seat's Redis key. A retried request with the same
    Idempotency-Key gets the same token, so it does not conflict with its own hold."""
    if idempotency_key is None:
        return secrets.token_hex(16)
    return hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()[:32]
