"""The scenarios of bench/onsale.py, one module each: hot.py, onsale.py (onsale, onsale4 and
uncontended), browse.py, openloop.py, logins.py and ga.py (general admission). Each holds the
client coroutine its load processes run and the `Run` mixin that prepares the screening,
drives the load and summarises it; base.py holds what they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def clients() -> dict[str, Callable[..., Any]]:
    """The load processes' coroutines by kind (imported on use: they import the loader)."""
    from bench.scenarios.browse import browse_client
    from bench.scenarios.ga import ga_burst_client, ga_client
    from bench.scenarios.hot import hot_client
    from bench.scenarios.logins import logins_client
    from bench.scenarios.onsale import onsale_client
    from bench.scenarios.openloop import openloop_client

    return {
        "hot": hot_client,
        "onsale": onsale_client,
        "browse": browse_client,
        "openloop": openloop_client,
        "logins": logins_client,
        "ga": ga_client,
        "ga_burst": ga_burst_client,
    }
