#!/usr/bin/env bash
# The README's "Push to phones and browsers" walk-through, run as written for each provider:
# start the provider's fake, start `pushwarden serve` with the variables the fake prints,
# register a device with `pushwarden register`, send with `pushwarden send`, and check that the
# fake printed the push with the body the app reads. Ports differ from the README's defaults so
# that the walk-through cannot collide with anything else running.
#
#   tests/quickstart/run.sh            # apns, fcm and webpush
#   tests/quickstart/run.sh fcm        # one of them
#
# Env: PUSHWARDEN_BIN, PUSHWARDEN_FAKE_BIN (default target/debug/...).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PW="${PUSHWARDEN_BIN:-$REPO/target/debug/pushwarden}"
FAKE="${PUSHWARDEN_FAKE_BIN:-$REPO/target/debug/pushwarden-fake}"
USER_ID=00000000-0000-0000-0000-000000000001
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

run_provider() {
    local provider="$1" dir="$WORK/$1"
    mkdir -p "$dir" && cd "$dir"
    local fake_port serve_port
    fake_port="$(free_port)"
    serve_port="$(free_port)"

    # 1. The fake, which prints the variables to give pushwarden.
    "$FAKE" "$provider" --listen "127.0.0.1:$fake_port" >fake.out 2>fake.err &
    PIDS+=($!)
    wait_for_line fake.err "accepted pushes are printed" "the $provider fake did not start"
    local env_lines
    env_lines="$(grep -E '^PUSHWARDEN_[A-Z_]+=' fake.err)"
    # 2. pushwarden with those variables (plus a VAPID key and subject for Web Push).
    local -a env=("PUSHWARDEN_DATA_DIR=$dir/data" "PUSHWARDEN_LISTEN=127.0.0.1:$serve_port")
    while IFS= read -r line; do env+=("$line"); done <<<"$env_lines"
    local register=(--user "$USER_ID")
    case "$provider" in
        webpush)
            "$PW" vapid generate --out vapid.pem >/dev/null
            env+=("PUSHWARDEN_VAPID_SUBJECT=mailto:admin@example.com")
            register+=(--device-type 9 --web-push webpush-subscription.json)
            ;;
        apns) register+=(--device-type 1 --token 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef) ;;
        fcm) register+=(--device-type 0 --token my-android-token) ;;
    esac
    env "${env[@]}" "$PW" serve >serve.out 2>serve.err &
    PIDS+=($!)
    wait_for_line serve.out "listening on" "pushwarden serve did not start"
    # 3. A device, then a notification for its user.
    env "${env[@]}" "$PW" register "${register[@]}" | tee register.out
    grep -q '^200 ' register.out
    env "${env[@]}" "$PW" send --type 5 --user "$USER_ID" | tee send.out
    grep -q '"queued":1' send.out
    # 4. The fake shows the push, in the body the app reads.
    wait_for_line fake.out '"provider"' "no push reached the $provider fake"
    python3 - "$provider" fake.out <<'PY'
import json, sys
provider, path = sys.argv[1], sys.argv[2]
push = json.loads(open(path).readline())
assert push["provider"] == provider, push
body = push["body"]
if provider == "fcm":
    data = body["data"]
    assert data["type"] == "5", body
    assert json.loads(data["payload"])["userId"] == "00000000-0000-0000-0000-000000000001", body
elif provider == "apns":
    assert body["aps"] == {"content-available": 1}, body
    assert body["data"]["type"] == 5, body
    assert json.loads(body["data"]["payload"])["userId"] == "00000000-0000-0000-0000-000000000001", body
else:
    assert body["data"]["type"] == 5, body
    assert json.loads(body["data"]["payload"])["userId"] == "00000000-0000-0000-0000-000000000001", body
print(f"ok: {provider} received {json.dumps(body)[:120]}...")
PY
    cd "$REPO"
}

for provider in "${@:-apns fcm webpush}"; do
    for p in $provider; do run_provider "$p"; done
done
echo "quickstart: every provider received its push"
