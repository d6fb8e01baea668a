#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv with the pinned stack when needed, then runs
#   ./run.sh spos-profile oneshot-s+    (or any spos-* command)
#   ./run.sh test [pytest args]         (the whole test suite; with arguments, plain pytest)
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3}
stamp="$VENV/.installed-$(cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)"

need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null 2>&1 ||
    echo "[setup] warning: could not install ${need_apt[*]} (tests that need it will say so)" >&2
fi

if [ ! -f "$stamp" ]; then
  echo "[setup] creating $VENV with the pinned dependencies (a few minutes the first time)" >&2
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -r requirements.txt >&2
  "$VENV/bin/python" -m pip install -q -e ".[dev]" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

export PATH="$PWD/$VENV/bin:$PATH"
cmd=${1:-spos-profile}
shift || true
if [ "$cmd" = test ]; then
  [ $# -gt 0 ] && exec python -m pytest -q "$@"
  # The tests that time networks or read the machine's load (marker `timing`) run alone; then the others run
  # side by side, one worker per core, each test file on one worker (its module fixtures built once).
  trap 'exit 130' INT # Ctrl-C ends both phases, not only the running one
  status=0
  python -m pytest -q -m timing || status=$?
  python -m pytest -q -m "not timing" -n auto --dist loadfile || status=$?
  exit $status
fi
exec "$cmd" "$@"
