#!/usr/bin/env bash
# Run CinemaCore with demo data: migrations, a demo cinema, the Taskiq worker and the API on
# http://$HOST:$PORT. Uses PostgreSQL/Redis at DATABASE_URL/REDIS_URL, or embedded ones when those
# do not answer. Creates .venv and installs the project on first use.
# Extra arguments go to `cinema demo` (e.g. --port 8080 --workers 2). Ctrl-C, SIGINT or SIGTERM
# stops everything, also when started in the background (`./scripts/demo.sh &`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
restore_sigint scripts/demo.sh "$@"
ensure_venv
ensure_services
if [ -z "${JWT_SECRET:-}" ] && ! grep -qs '^JWT_SECRET=' .env; then
  mkdir -p .local
  [ -s .local/jwt_secret ] || .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))' > .local/jwt_secret
  export JWT_SECRET="$(cat .local/jwt_secret)"
fi

children=()
stop_children() {  # SIGTERM, then up to 15 s of grace, then SIGKILL
  local pid
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 150); do
    kill -0 "${children[@]}" 2>/dev/null || break
    sleep 0.1
  done
  for pid in "${children[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
on_exit stop_children

.venv/bin/cinema migrate
if .venv/bin/cinema worker --help >/dev/null 2>&1; then
  .venv/bin/cinema worker &
  children+=($!)
else
  echo "this version has no 'cinema worker' yet: running the API without the background worker" >&2
fi
.venv/bin/cinema demo "$@" &
children+=($!)
# Whichever stops first (or Ctrl-C) ends the demo; the EXIT trap stops the rest and the servers.
wait -n "${children[@]}"
