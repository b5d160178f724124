#!/usr/bin/env bash
# Interop tests: official @microsoft/signalr JS clients (8.0.7 as used by Bitwarden, latest 10.x)
# against a pushwarden server binary.
#
#   tests/interop/run.sh                       # all suites, both client versions
#   tests/interop/run.sh tests/interop/auth.test.mjs   # selected files
#   INTEROP_CLIENTS=v8 tests/interop/run.sh    # one client version
#
# Env: PUSHWARDEN_BIN (default <repo>/target/debug/pushwarden), INTEROP_CLIENTS (v8,v10),
#      INTEROP_RUST_LOG (server RUST_LOG, default info), INTEROP_SERVER_LOG=1 / INTEROP_CLIENT_LOG=1
#      (stream logs to stderr), INTEROP_CONCURRENCY (test files in parallel, default 4).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$DIR/../.." && pwd)"
export PUSHWARDEN_BIN="${PUSHWARDEN_BIN:-$REPO/target/debug/pushwarden}"
VERSIONS="${INTEROP_CLIENTS:-v8,v10}"

command -v node >/dev/null || { echo "node not found" >&2; exit 2; }
command -v npm >/dev/null || { echo "npm not found" >&2; exit 2; }

# npm ci when node_modules is missing or does not match package.json + package-lock.json
for v in ${VERSIONS//,/ }; do
  pkg="$DIR/$v"
  [ -f "$pkg/package-lock.json" ] || { echo "missing $pkg/package-lock.json" >&2; exit 2; }
  stamp="$(cat "$pkg/package.json" "$pkg/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [ ! -d "$pkg/node_modules" ] || [ "$(cat "$pkg/node_modules/.interop-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "==> npm ci in tests/interop/$v"
    (cd "$pkg" && npm ci --no-audit --no-fund)
    echo "$stamp" > "$pkg/node_modules/.interop-stamp"
  fi
done

if [ ! -x "$PUSHWARDEN_BIN" ]; then
  echo "pushwarden binary not found/executable: $PUSHWARDEN_BIN (build it or set PUSHWARDEN_BIN)" >&2
  exit 2
fi

if [ "$#" -gt 0 ]; then
  FILES=("$@")
else
  FILES=("$DIR"/*.test.mjs)
fi

status=0
for v in ${VERSIONS//,/ }; do
  echo "==> SignalR client $v: node --test ${FILES[*]#$REPO/}"
  if ! INTEROP_CLIENTS="$v" node --test --test-concurrency="${INTEROP_CONCURRENCY:-4}" "${FILES[@]}"; then
    echo "==> FAILED with client $v" >&2
    status=1
  fi
done
exit "$status"
