#!/usr/bin/env bash
# The admin page in a browser: Debian's headless Chromium driven by playwright-core (pinned in
# package-lock.json; its own browser downloads are never used), against the real binary with a
# fake FCM and a hub client. Logs in, sees the client and a /send in the counts, creates an
# installation, looks up a device and its delivery, checks there is no console error, and keeps
# a screenshot at target/artefacts/admin.png.
#
# Env: PUSHWARDEN_BIN, PUSHWARDEN_FAKE_BIN (default target/debug/...), CHROMIUM (default
#      /usr/bin/chromium, installed with apt-get when missing), ADMIN_SCREENSHOT.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$DIR/../.." && pwd)"
PW="${PUSHWARDEN_BIN:-$REPO/target/debug/pushwarden}"
FAKE="${PUSHWARDEN_FAKE_BIN:-$REPO/target/debug/pushwarden-fake}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
SCREENSHOT="${ADMIN_SCREENSHOT:-$REPO/target/artefacts/admin.png}"
USER_ID=00000000-0000-0000-0000-0000000000ad
DEVICE_ID=admin-test-android
ADMIN_TOKEN="admin-token-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

for bin in "$PW" "$FAKE"; do
    [ -x "$bin" ] || { echo "not built: $bin (cargo build --bins, or set PUSHWARDEN_BIN / PUSHWARDEN_FAKE_BIN)" >&2; exit 2; }
done
command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are needed" >&2; exit 2; }
if [ ! -x "$CHROMIUM" ]; then
    echo "Chromium is missing: installing Debian's chromium with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq chromium
fi

# npm ci when node_modules is missing or does not match package.json + package-lock.json.
stamp="$(cat "$DIR/package.json" "$DIR/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -d "$DIR/node_modules" ] || [ "$(cat "$DIR/node_modules/.admin-stamp" 2>/dev/null)" != "$stamp" ]; then
    (cd "$DIR" && npm ci --no-audit --no-fund)
    echo "$stamp" > "$DIR/node_modules/.admin-stamp"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_line() { # file pattern what
    for _ in $(seq 1 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "FAIL: $3 (no '$2' in $1):" >&2
    cat "$1" >&2
    return 1
}

cd "$WORK"
fake_port="$(free_port)"
serve_port="$(free_port)"
"$FAKE" fcm --listen "127.0.0.1:$fake_port" >fake.out 2>fake.err &
PIDS+=($!)
wait_for_line fake.err "accepted pushes are printed" "the FCM fake did not start"
env=("PUSHWARDEN_DATA_DIR=$WORK/data" "PUSHWARDEN_LISTEN=127.0.0.1:$serve_port" "PUSHWARDEN_ADMIN_TOKEN=$ADMIN_TOKEN")
while IFS= read -r line; do env+=("$line"); done < <(grep -E '^PUSHWARDEN_[A-Z_]+=' fake.err)
env "${env[@]}" "$PW" serve >serve.out 2>serve.err &
PIDS+=($!)
wait_for_line serve.out "listening on" "pushwarden serve did not start"
env "${env[@]}" "$PW" register --user "$USER_ID" --device-type 0 --token admin-test-fcm-token \
    --device-id "$DEVICE_ID" >register.out
grep -q '^200 ' register.out || { cat register.out >&2; exit 1; }

# A hub client of the same user, so that the page has a connection to count.
env "${env[@]}" "$PW" listen --sub "$USER_ID" >listen.out 2>listen.err &
PIDS+=($!)
wait_for_line listen.err "connected to" "pushwarden listen did not connect"

send_command="$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' \
    env "${env[@]}" "$PW" send --type 5 --user "$USER_ID")"
if ! ADMIN_URL="http://127.0.0.1:$serve_port" ADMIN_TOKEN="$ADMIN_TOKEN" SEND_COMMAND="$send_command" \
    DEVICE_ID="$DEVICE_ID" USER_ID="$USER_ID" SCREENSHOT="$SCREENSHOT" CHROMIUM="$CHROMIUM" \
    node "$DIR/admin.mjs"; then
    echo "== pushwarden's log" >&2
    tail -n 50 serve.err >&2
    exit 1
fi
