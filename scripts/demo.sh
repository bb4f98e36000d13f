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

# Offline payments for the web app: without a Stripe key, a local Stripe-compatible server
# (localstripe, from the dev extra) takes the payments and sends the signed webhooks, so a
# ticket bought at http://127.0.0.1:8000/ turns CONFIRMED with the test card 4242 4242 4242 4242.
start_localstripe() {
  local api_port=8000 previous="" arg stripe_port
  for arg in "$@"; do
    [ "$previous" = "--port" ] && api_port=$arg
    case $arg in --port=*) api_port=${arg#--port=} ;; esac
    previous=$arg
  done
  stripe_port=${LOCALSTRIPE_PORT:-$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  mkdir -p .local
  .venv/bin/localstripe --port "$stripe_port" --from-scratch >.local/localstripe.log 2>&1 &
  children+=($!)
  export STRIPE_SECRET_KEY=sk_test_cinemacore_demo
  export STRIPE_API_BASE="http://127.0.0.1:$stripe_port"
  STRIPE_WEBHOOK_SECRET="whsec_demo_$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(16))')"
  export STRIPE_WEBHOOK_SECRET
  .venv/bin/python - "$STRIPE_API_BASE" "http://127.0.0.1:$api_port/api/webhooks/stripe/" "$STRIPE_WEBHOOK_SECRET" <<'PY'
import sys, time, urllib.parse, urllib.request
base, url, secret = sys.argv[1:]
body = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
for _ in range(150):
    try:
        urllib.request.urlopen(f"{base}/_config/webhooks/cinemacore", body, timeout=2).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"localstripe did not start at {base} (see .local/localstripe.log)")
PY
  echo "payments: localstripe at $STRIPE_API_BASE (test card 4242 4242 4242 4242)" >&2
}
if [ -z "${STRIPE_SECRET_KEY:-}" ] && ! grep -qs '^STRIPE_SECRET_KEY=.' .env && [ -x .venv/bin/localstripe ]; then
  start_localstripe "$@"
fi

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
