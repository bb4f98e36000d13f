# Shared by demo.sh and test.sh. Sourced, not run.

# Commands to run when the calling script exits (any way but SIGKILL), last registered first.
_on_exit_commands=()
_run_on_exit() {
  local cmd
  for cmd in "${_on_exit_commands[@]}"; do eval "$cmd" || true; done
}
on_exit() {
  _on_exit_commands=("$1" "${_on_exit_commands[@]}")
  trap _run_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# A non-interactive bash starts its background jobs with SIGINT ignored (`./scripts/demo.sh &`
# from a script), and a shell cannot trap a signal that was ignored when it started: INT would
# do nothing. So re-exec the script once with SIGINT back to default, and INT stops it as TERM
# does. Call it first, with the script's path from the current directory and its arguments.
restore_sigint() {
  local script=$1
  shift
  if [ -z "${_CINEMA_SIGINT_RESTORED:-}" ]; then
    export _CINEMA_SIGINT_RESTORED=1
    exec python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' bash "$script" "$@"
  fi
  unset _CINEMA_SIGINT_RESTORED  # not for the children: a nested demo.sh restores its own
}

install_extras() {  # extras, e.g. dev,embedded: pip install -e ".[extras]" once per pyproject.toml
  local stamp=.venv/.installed-$1-$(sha1sum pyproject.toml | cut -c1-12)
  if [ ! -e "$stamp" ]; then
    .venv/bin/pip install -q -e ".[$1]"
    touch "$stamp"
  fi
}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
  fi
  install_extras dev
}

# Use PostgreSQL and Redis at DATABASE_URL / REDIS_URL (environment, then .env) when they answer;
# otherwise start embedded ones (the `embedded` extra, data under .local/services), export their
# URLs for everything this script runs next, and stop them when it exits.
ensure_services() {
  local missing exports
  missing=$(.venv/bin/python -m cinema.devservices missing)
  [ -z "$missing" ] && return 0
  echo "not answering: $missing -> using embedded servers (data in .local/services)" >&2
  install_extras dev,embedded
  exports=$(.venv/bin/python -m cinema.devservices up)
  eval "$exports"
  on_exit '.venv/bin/python -m cinema.devservices down'
}
