"""Live streams per client address counted over every API process, in Redis: one sorted set
per address, `{prefix}live:client:ADDRESS`, of lease ids and their expiry. A stream takes a
lease when it opens and gives it back when it ends; each process renews its open leases, so
a process that dies frees its places when they expire (LEASE_SECONDS) instead of never."""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Mapping

from cinema.holds import LUA_DIR, REDIS_FAILURES, RedisClient, run_scripts
from cinema.live.service import LiveUnavailable

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0  # renewed every RENEW_SECONDS by the process holding it
RENEW_SECONDS = LEASE_SECONDS / 3


def leases_key(prefix: str, client: str) -> str:
    return f"{prefix}live:client:{client}"


class RedisStreamLeases:
    """The StreamLeases port of cinema/live/service.py."""

    renew_seconds = RENEW_SECONDS

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._take = client.register_script((LUA_DIR / "live_lease.lua").read_text())
        self._renew = client.register_script((LUA_DIR / "live_lease_renew.lua").read_text())
        self._process = secrets.token_hex(6)
        self._issued = 0

    async def take(self, client: str, cap: int) -> str | None:
        self._issued += 1
        lease = f"{self._process}:{self._issued}"
        try:
            taken = await self._take(
                keys=[leases_key(self._prefix, client)],
                args=[lease, cap, int(LEASE_SECONDS * 1000)],
            )
        except REDIS_FAILURES as exc:
            raise LiveUnavailable(f"live seat status unavailable: {exc}") from exc
        return lease if taken == 1 else None

    async def give_back(self, client: str, lease: str) -> None:
        try:
            await self._client.zrem(leases_key(self._prefix, client), lease)
        except REDIS_FAILURES as exc:  # it expires by itself
            log.info("could not give back a live-stream lease (%r)", exc)

    async def renew(self, held: Mapping[str, str]) -> None:
        """`held`: lease id -> client address, every lease this process holds."""
        by_client: defaultdict[str, list[str]] = defaultdict(list)
        for lease, client in held.items():
            by_client[client].append(lease)
        lifetime = int(LEASE_SECONDS * 1000)
        calls = [([leases_key(self._prefix, c)], [lifetime, *ids]) for c, ids in by_client.items()]
        try:
            await run_scripts(self._client, self._renew, calls)
        except REDIS_FAILURES as exc:
            log.warning("could not renew %d live-stream lease(s) (%r)", len(held), exc)
