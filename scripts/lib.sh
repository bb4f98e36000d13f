# Shared by demo.sh and test.sh. Sourced, not run.

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  local stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
  if [ ! -e "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
  fi
}

_answers() {  # host port
  .venv/bin/python - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

_host_port() {  # url default_port -> "host port"
  .venv/bin/python - "$1" "$2" <<'PY'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or int(sys.argv[2]))
PY
}

ensure_services() {
  local pg redis
  pg=$(_host_port "${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/cinema}" 5432)
  redis=$(_host_port "${REDIS_URL:-redis://127.0.0.1:6379/0}" 6379)
  # shellcheck disable=SC2086
  _answers $pg || { echo "PostgreSQL does not answer at ${pg/ /:}" >&2; return 1; }
  # shellcheck disable=SC2086
  _answers $redis || { echo "Redis does not answer at ${redis/ /:}" >&2; return 1; }
}
