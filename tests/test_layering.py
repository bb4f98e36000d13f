"""The house rules of the guide, checked on the source: the web layer and the domain import no
adapter (only cinema/bootstrap.py, the composition root, does), and handlers leave access,
limits and parsing to the route table instead of checking them again by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The modules that speak to PostgreSQL, Redis, Taskiq and Stripe, and their drivers.
ADAPTERS = (
    "cinema.store",
    "cinema.holds",
    "cinema.live_redis",
    "cinema.live_leases",
    "cinema.ratelimit",
    "cinema.payments",
    "tasks",
    "asyncpg",
    "redis",
    "taskiq",
    "taskiq_redis",
    "stripe",
)
# The web layer, the domain packages, and the aiohttp app built around the root.
LAYERED = sorted(
    [
        *ROOT.glob("cinema/api/*.py"),
        *ROOT.glob("cinema/booking/*.py"),
        *ROOT.glob("cinema/catalogue/*.py"),
        *ROOT.glob("cinema/pricing/*.py"),
        *ROOT.glob("cinema/auth/*.py"),
        *ROOT.glob("cinema/boxoffice/*.py"),
        *ROOT.glob("cinema/tickets/*.py"),
        *ROOT.glob("cinema/live/*.py"),
        ROOT / "cinema/app.py",
    ]
)
HANDLER_MODULES = ("auth", "bookings", "catalogue", "webhooks", "health", "desk", "users", "events")
# What the route table does for a handler (cinema/api/routes.py `serve`).
TABLE_DUTIES = {
    "authenticate",
    "authenticate_role",
    "read_body",
    "read_query",
    "enforce",
    "apply_limit",
}


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def is_adapter(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ADAPTERS)


@pytest.mark.parametrize("path", LAYERED, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_no_adapter(path):
    wrong = sorted({m for m in imported_modules(path) if is_adapter(m)})
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}; go through cinema/bootstrap.py"


# Beside the root, the operator's commands that work on the database directly: migrations
# (cli.py, which also names the drivers' start-up errors), `cinema demo`, `cinema createuser`.
ADMIN_TOOLS = {"cinema/bootstrap.py", "cinema/cli.py", "cinema/demo.py", "cinema/tools.py"}
ADAPTER_FILES = (
    "cinema/store/",
    "cinema/payments/",
    "cinema/holds.py",
    "cinema/ratelimit.py",
    "cinema/live_redis.py",
    "cinema/live_leases.py",
)


def test_only_the_root_and_the_admin_tools_import_adapters():
    importers = set()
    for path in ROOT.glob("cinema/**/*.py"):
        name = str(path.relative_to(ROOT))
        if not name.startswith(ADAPTER_FILES) and any(map(is_adapter, imported_modules(path))):
            importers.add(name)
    assert importers <= ADMIN_TOOLS
    assert "cinema/bootstrap.py" in importers
    assert not (ROOT / "cinema/worker.py").exists()  # one worker.py: tasks/loop.py's job


@pytest.mark.parametrize("name", HANDLER_MODULES)
def test_handlers_leave_access_limits_and_parsing_to_the_route_table(name):
    path = ROOT / f"cinema/api/{name}.py"
    calls = {
        node.func.id
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not calls & TABLE_DUTIES, f"{name}.py does by hand: {sorted(calls & TABLE_DUTIES)}"
