#!/usr/bin/env bash
# Run every check: lint, types, and the test suite against real PostgreSQL and Redis.
# Creates .venv and installs the project on first use. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv
ensure_services
.venv/bin/ruff check cinema tasks tests bench
.venv/bin/mypy cinema tasks
.venv/bin/pytest "$@"
