"""A real Redis Cluster on loopback for tests: 3 masters and 3 replicas from Debian's
`redis-server`, built with `redis-cli --cluster create`, stopped at the end of the session.
Any test may kill a master (`kill`) and bring it back (`restart`), or move a hash slot to
another master while clients use it (`SlotMigration`: real ASK, TRYAGAIN and MOVED)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.exceptions import ResponseError

NODES = 6
NODE_TIMEOUT_MS = 2000  # how long a silent master stays a master: the failover's floor
_BUS_OFFSET = 10000  # Redis Cluster's bus listens on port + 10000


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    """Ports whose cluster-bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 29999)
        if port not in ports and _bindable(port) and _bindable(port + _BUS_OFFSET):
            ports.append(port)
    return ports


def _cli(port: int, *args: str, timeout: float = 10) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout


def wait_for_sync(predicate: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within} s: {what}")
        time.sleep(0.1)


@dataclass
class RedisClusterProcs:
    workdir: Path
    ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start_node(self, port: int) -> None:
        log = (self.workdir / f"redis-{port}.log").open("ab")
        self.procs[port] = subprocess.Popen(
            [
                *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
                *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                # A replica may take over however long its master has been gone.
                *("--cluster-replica-validity-factor", "0"),
                *("--repl-diskless-sync-delay", "0"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                *("--maxclients", "4000"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_sync(lambda: _cli(port, "ping").strip() == "PONG", 15, f"redis on {port}")

    def start(self) -> RedisClusterProcs:
        self.ports = free_cluster_ports(NODES)
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create"),
                *(f"127.0.0.1:{p}" for p in self.ports),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        self.wait_healthy()
        return self

    def state_ok(self, port: int) -> bool:
        return "cluster_state:ok" in _cli(port, "cluster", "info")

    def masters(self) -> list[int]:
        """Ports of the masters that own slots, as the first live node sees them."""
        alive = next(p for p in self.ports if p in self.procs)
        found = []
        for line in _cli(alive, "cluster", "nodes").splitlines():
            parts = line.split()
            if len(parts) > 8 and "master" in parts[2] and "fail" not in parts[2]:
                port = int(parts[1].split("@")[0].split(":")[1])
                if port in self.procs:  # a killed master keeps its slots until the failover
                    found.append(port)
        return sorted(found)

    def replica_synced(self, port: int) -> bool:
        info = _cli(port, "info", "replication")
        return "role:master" in info or "master_link_status:up" in info

    def wait_healthy(self, within: float = 60) -> None:
        """Every running node says cluster_state:ok and sees three live masters with slots,
        and every replica has synced (a replica that never synced cannot take over)."""
        wait_for_sync(
            lambda: (
                all(self.state_ok(p) and self.replica_synced(p) for p in self.procs)
                and len(self.masters()) == 3
            ),
            within,
            "cluster_state:ok on every node",
        )

    def master_of_slot(self, slot: int) -> int:
        alive = next(p for p in self.ports if p in self.procs)
        for line in _cli(alive, "cluster", "nodes").splitlines():
            parts = line.split()
            if len(parts) < 9 or "master" not in parts[2] or "fail" in parts[2]:
                continue
            for spec in parts[8:]:
                low, _, high = spec.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(parts[1].split("@")[0].split(":")[1])
        raise LookupError(f"no master owns slot {slot}")

    def open_slots(self) -> list[str]:
        """Slots a master has in MIGRATING or IMPORTING state ([slot->-id], [slot-<-id])."""
        found = []
        for port in self.masters():
            for line in _cli(port, "cluster", "nodes").splitlines():
                if "myself" in line:
                    found += [f"{port}:{s}" for s in line.split()[8:] if s.startswith("[")]
        return found

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Bring a killed node back (it rejoins from its nodes.conf, as a replica now)."""
        self.start_node(port)

    def stop(self) -> None:
        """Every node, even if one of them will not die."""
        failed: list[BaseException] = []
        for port in list(self.procs):
            try:
                self.kill(port)
            except Exception as exc:  # the next node must still go
                failed.append(exc)
        if failed:
            raise failed[0]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcs]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="cinema-cluster-"))
    cluster = RedisClusterProcs(workdir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


def error_counts(port: int) -> dict[str, int]:
    """The node's error replies by prefix (INFO errorstats: MOVED, ASK, TRYAGAIN, ...)."""
    with _node(port) as node:
        stats = node.info("errorstats")
    return {k.removeprefix("errorstat_"): int(v["count"]) for k, v in stats.items()}


class SlotMigration:
    """Moves one hash slot from its master to another the way `redis-cli --cluster reshard`
    does, one step at a time so a test can run traffic in between: `begin` (SETSLOT
    IMPORTING on the target, MIGRATING on the source: the source answers ASK for keys it no
    longer has and TRYAGAIN for a multi-key command whose keys are split), `move_keys`
    (MIGRATE, a few keys at a time), `finish` (the rest of the keys, then SETSLOT NODE
    everywhere: from then on MOVED). `finish` may be called at any point, also twice."""

    def __init__(self, cluster: RedisClusterProcs, slot: int, target: int) -> None:
        self.cluster = cluster
        self.slot = slot
        self.source = cluster.master_of_slot(slot)
        if target == self.source:
            raise ValueError(f"slot {slot} is on {target} already")
        self.target = target
        self.moved = 0
        self.begun = False
        self._ids = {p: _cli(p, "cluster", "myid").strip() for p in (self.source, target)}

    def begin(self) -> None:
        self.begun = True
        with _node(self.target) as node:
            node.execute_command(
                "CLUSTER", "SETSLOT", self.slot, "IMPORTING", self._ids[self.source]
            )
        with _node(self.source) as node:
            node.execute_command(
                "CLUSTER", "SETSLOT", self.slot, "MIGRATING", self._ids[self.target]
            )

    def keys_left(self) -> int:
        with _node(self.source) as node:
            return int(node.execute_command("CLUSTER", "COUNTKEYSINSLOT", self.slot))

    def move_keys(self, limit: int, pause: float = 0.0) -> int:
        """MIGRATE up to `limit` of the slot's keys one by one (`pause` s apart, so one
        screening's seats sit on both nodes for a while); returns how many moved."""
        with _node(self.source) as node:
            keys = node.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, limit)
            for key in keys:
                try:
                    node.execute_command("MIGRATE", "127.0.0.1", self.target, key, 0, 5000)
                except ResponseError as exc:
                    if "BUSYKEY" not in str(exc):
                        raise
                    # Written on the target after an ASK (so newer): the source's copy goes.
                    node.delete(key)
                self.moved += 1
                if pause:
                    time.sleep(pause)
        return len(keys)

    def finish(self) -> None:
        """Move what is left and give the slot to the target: on the target first, then the
        source, then every other master (the order `redis-cli --cluster` uses)."""
        if not self.begun:
            return
        while self.move_keys(100):
            pass
        target_id = self._ids[self.target]
        others = [p for p in self.cluster.masters() if p not in (self.source, self.target)]
        for port in (self.target, self.source, *others):
            with _node(port) as node:
                node.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", target_id)
