#!/usr/bin/env bash
# Run CinemaCore with demo data: migrations, a demo cinema, the API on http://$HOST:$PORT.
# Creates .venv and installs the project on first use. Extra arguments go to `cinema demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv
ensure_services
if [ -z "${JWT_SECRET:-}" ] && ! grep -qs '^JWT_SECRET=' .env; then
  mkdir -p .local
  [ -s .local/jwt_secret ] || .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))' > .local/jwt_secret
  export JWT_SECRET="$(cat .local/jwt_secret)"
fi
exec .venv/bin/cinema demo "$@"
