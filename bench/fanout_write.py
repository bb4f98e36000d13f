#!/usr/bin/env python3
"""What one viewer's write costs the API process: a bare `transport.write()` against the
whole path through the hub (cinema/live/hub.py → viewer.py → api/events.py's Connection).

    .venv/bin/python -m bench.fanout_write [--viewers 2000] [--batches 100] [--frames 9]

V loopback connections whose readers run in another process (pinned to the last core; this
one to the first), B batches of F ~200-byte frames to each, 20 ms apart. Prints the CPU time
of this process per write, for each path, twice, alternating. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time

import orjson
import uvloop

from cinema.api.events import Connection, _bound_buffers
from cinema.live.hub import ScreeningHub
from cinema.live.viewer import Viewer

FRAME = b"id: 1\nevent: held\ndata: " + b"x" * 180 + b"\n\n"


class Sink(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


def readers(port: int, count: int) -> None:
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[-1]})

    async def hold() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            await loop.create_connection(Sink, "127.0.0.1", port)
        await asyncio.sleep(3600)

    uvloop.run(hold())


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    writers: list[asyncio.StreamWriter] = []
    everyone = asyncio.Event()

    async def accepted(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if len(writers) == args.viewers:
            everyone.set()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    child = multiprocessing.Process(target=readers, args=(port, args.viewers))
    child.start()
    try:
        await asyncio.wait_for(everyone.wait(), 120)
        hub = ScreeningHub(1, 8)
        for writer in writers:
            viewer = Viewer("bench", 1024)
            transport = writer.transport
            _bound_buffers(transport)  # type: ignore[arg-type]
            viewer.attach(Connection(transport, chunked=True))  # type: ignore[arg-type]
            hub.viewers.add(viewer)
        results: dict[str, list[float]] = {"hub_us": [], "bare_write_us": []}
        for path in ("hub_us", "bare_write_us") * 2:
            started = time.process_time()
            for _ in range(args.batches):
                if path == "hub_us":
                    for _ in range(args.frames):
                        hub.broadcast(FRAME)
                    hub.flush()
                else:
                    data = FRAME * args.frames
                    for writer in writers:
                        writer.transport.write(data)
                await asyncio.sleep(0.02)
            spent = time.process_time() - started
            results[path].append(round(spent / (args.batches * args.viewers) * 1e6, 2))
        return results
    finally:
        child.kill()
        child.join()
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--frames", type=int, default=9, help="frames per batch")
    args = parser.parse_args(argv)
    figures = uvloop.run(measure(args))
    figures_out = {**figures, "batch_bytes": len(FRAME) * args.frames}
    figures_out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(orjson.dumps(figures_out, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
