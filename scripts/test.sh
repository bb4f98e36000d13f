#!/usr/bin/env bash
# Run every check: lint, types, and the test suite against real PostgreSQL and Redis (the ones at
# DATABASE_URL / REDIS_URL, or embedded ones started for this run when those do not answer).
# Creates .venv and installs the project on first use. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv
ensure_services
lint_dirs=()
for dir in cinema tasks tests bench; do [ -d "$dir" ] && lint_dirs+=("$dir"); done
.venv/bin/ruff check "${lint_dirs[@]}"
.venv/bin/mypy cinema tasks
.venv/bin/pytest "$@"
