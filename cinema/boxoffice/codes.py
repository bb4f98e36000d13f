"""Ticket codes: the reservation id and an HMAC-SHA256 tag of it (160 bits kept), so any
ticket row has a code without storing one, and a code cannot be guessed or forged without
the key. Format: "<reservation id>-<27 base64url characters>"."""

from __future__ import annotations

import base64
import hashlib
import hmac

TAG_BYTES = 20  # 160 bits: a forger's odds per try are 2**-160
_TAG_CHARS = 27  # base64url of 20 bytes, unpadded
_MAX_ID_DIGITS = 19
_DERIVE_LABEL = b"cinemacore ticket codes v1"


def derive_key(jwt_secret: str) -> bytes:
    """A key of its own from the JWT secret (TICKET_CODE_SECRET unset): one HMAC step, so a
    ticket code says nothing about the token key."""
    return hmac.new(jwt_secret.encode(), _DERIVE_LABEL, hashlib.sha256).digest()


class TicketCodes:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, reservation_id: int) -> str:
        mac = hmac.new(self._key, b"ticket:%d" % reservation_id, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:TAG_BYTES]).rstrip(b"=").decode()

    def code(self, reservation_id: int) -> str:
        return f"{reservation_id}-{self._tag(reservation_id)}"

    def reservation_id(self, code: str) -> int | None:
        """The ticket's reservation id, or None for a code that is malformed or forged."""
        head, dash, tag = code.strip().partition("-")
        if not dash or not head.isascii() or not head.isdigit() or len(head) > _MAX_ID_DIGITS:
            return None
        if len(tag) != _TAG_CHARS:
            return None
        reservation_id = int(head)
        if not hmac.compare_digest(tag.encode(), self._tag(reservation_id).encode()):
            return None
        return reservation_id


def redacted(code: str) -> str:
    """For logs: a code is never logged in full (it admits its bearer)."""
    return code[:8] + "..." if len(code) > 8 else "..."
