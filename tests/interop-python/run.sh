#!/usr/bin/env bash
# Interop tests: independent Python SignalR clients (pysignalr 1.3.3, signalrcore 1.0.2) against a
# pushwarden binary. Each test module starts its own server.
#
#   tests/interop-python/run.sh                          # everything
#   tests/interop-python/run.sh test_signalrcore.py -k sse   # extra args go to pytest
#
# Env: PUSHWARDEN_BIN (default <repo>/target/debug/pushwarden), PYTHON (default python3.11, else
#      python3), INTEROP_RUST_LOG (server RUST_LOG, default info),
#      INTEROP_SERVER_LOG_DIR (write each module's whole server log there).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$DIR/../.." && pwd)"
export PUSHWARDEN_BIN="${PUSHWARDEN_BIN:-$REPO/target/debug/pushwarden}"
VENV="$DIR/.venv"
STAMP_FILE="$VENV/.requirements-stamp"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
command -v "$PY" >/dev/null || { echo "$PY not found" >&2; exit 2; }

# (Re)create the venv when it is missing, broken, or was built from other requirements / another python.
stamp="$( { cat "$DIR/requirements.txt"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP_FILE" 2>/dev/null)" != "$stamp" ]; then
  echo "==> creating $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$DIR/requirements.txt"
  echo "$stamp" > "$STAMP_FILE"
fi

if [ ! -x "$PUSHWARDEN_BIN" ]; then
  echo "pushwarden binary not found/executable: $PUSHWARDEN_BIN (build it or set PUSHWARDEN_BIN)" >&2
  exit 2
fi

cd "$DIR"
echo "==> python -m pytest -q (pysignalr, signalrcore) against $PUSHWARDEN_BIN"
set +e
"$VENV/bin/python" -m pytest -q "$@"
status=$?
set -e
# pytest exit 5 = no tests collected: a failure here, never a silent pass
if [ "$status" -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi
exit "$status"
