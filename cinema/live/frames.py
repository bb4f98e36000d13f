"""The text/event-stream wire format: each event is encoded once and the same bytes go to every
viewer of the screening."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

HEARTBEAT = b": ping\n\n"  # a comment line: proxies see traffic, a dead peer fails the write


def retry(milliseconds: int) -> bytes:
    """How long the browser waits before it reconnects (EventSource's `retry:` field)."""
    return f"retry: {milliseconds}\n\n".encode()


def event(event_id: int, name: str, data: Mapping[str, Any]) -> bytes:
    # orjson writes no newlines, so the whole payload is one `data:` line.
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name.encode(), orjson.dumps(data))
