#!/usr/bin/env bash
# The README's reverse-proxy examples, proven: nginx, Caddy, Apache and HAProxy (Debian's
# packages) each run with the configuration README.md prints, in front of a real pushwarden,
# and the official @microsoft/signalr client (8.0.7, as Bitwarden pins) goes through each on
# both hubs and every transport; `pushwarden doctor` must pass on each. Deliberately broken
# variants of the same configurations must break the client the way they break real clients,
# and doctor must name the fault. See tests/proxies/README.md.
#
#   tests/proxies/run.sh                                   # both test files
#   tests/proxies/run.sh tests/proxies/client.test.mjs     # selected files
#
# Env: PUSHWARDEN_BIN (default <repo>/target/debug/pushwarden), PROXIES_KEEP=1 (keep the temp
#      folder with configs and logs), PROXIES_CLIENT (v8 default, or v10).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$DIR/../.." && pwd)"
export PUSHWARDEN_BIN="${PUSHWARDEN_BIN:-$REPO/target/debug/pushwarden}"
CLIENT="${PROXIES_CLIENT:-v8}"
T0=$SECONDS

say() { echo "==> [$((SECONDS - T0))s] $*"; }
die() { echo "tests/proxies: $*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------------------
# Binaries first; apt-get only for what is missing. policy-rc.d keeps the packages' services
# from starting on install (the harness runs its own processes and never touches the system's).
export PATH="$PATH:/usr/sbin:/sbin" # nginx, apache2 and haproxy live there
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v caddy >/dev/null || missing+=(caddy)
command -v apache2 >/dev/null || missing+=(apache2)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} with apt-get"
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
command -v node >/dev/null || die "node not found (scripts/test.sh installs it)"
say "nginx $(nginx -v 2>&1 | sed 's|.*/||'), caddy $(caddy version | cut -d' ' -f1), apache $(apache2 -v | sed -n 's|Server version: Apache/\([^ ]*\).*|\1|p'), haproxy $(haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p')"

# The official client from tests/interop (its lockfile, its node_modules; npm ci when stale).
pkg="$REPO/tests/interop/$CLIENT"
stamp="$(cat "$pkg/package.json" "$pkg/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -d "$pkg/node_modules" ] || [ "$(cat "$pkg/node_modules/.interop-stamp" 2>/dev/null)" != "$stamp" ]; then
    say "npm ci in tests/interop/$CLIENT"
    (cd "$pkg" && npm ci --no-audit --no-fund >/dev/null)
    echo "$stamp" >"$pkg/node_modules/.interop-stamp"
fi

[ -x "$PUSHWARDEN_BIN" ] || die "pushwarden binary not found/executable: $PUSHWARDEN_BIN (build it or set PUSHWARDEN_BIN)"
# doctor's verdicts are part of what this proves: a binary without it is a failure, not a skip.
"$PUSHWARDEN_BIN" doctor --help >/dev/null 2>&1 ||
    die "'$PUSHWARDEN_BIN doctor --help' failed: this binary has no doctor command, which the proxy checks need"

# --- processes, cleaned up on any exit ----------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pushwarden-proxies.XXXXXX")"
chmod 755 "$WORK" # nginx's and Apache's workers (nobody, www-data) open files below it
PIDS=()
# TERM, then KILL whatever is still there after 10 s.
stop_pids() {
    local pid deadline
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 10))
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
# The proxies first (PIDS[0] is pushwarden): their connections to pushwarden close with them,
# so pushwarden's graceful shutdown has nothing left to wait for.
cleanup() {
    if [ "${#PIDS[@]}" -gt 1 ]; then stop_pids "${PIDS[@]:1}"; fi
    if [ "${#PIDS[@]}" -gt 0 ]; then stop_pids "${PIDS[0]}"; fi
    if [ "${PROXIES_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait until `curl` gets any HTTP answer from $1 (extra curl flags after it), or fail at the deadline.
wait_http() {
    local url="$1" what="$2" pid="$3" log="$4" deadline=$((SECONDS + 20)) code
    shift 4
    while :; do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true)"
        [ "$code" != "000" ] && [ -n "$code" ] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "--- $log" >&2; tail -n 40 "$log" >&2 || true
            die "$what exited before answering on $url"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "--- $log" >&2; tail -n 40 "$log" >&2 || true
            die "$what did not answer on $url within 20 s"
        fi
        sleep 0.1
    done
}

spare_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# pushwarden, fresh data dir. The long poll is held 45 s (default 90 s) so that the 30 s
# variants cut it well within the run; doctor idles 40 s, less than that, so on a sound proxy
# its held poll is still open when it stops looking. Every client arrives through a proxy on
# loopback, i.e. as one peer, so the per-peer rate limits are raised out of the way. The
# long-polling clients the 30 s variants cut never poll again, and a graceful shutdown waits
# PUSHWARDEN_SHUTDOWN_TIMEOUT for them to collect their Close: 2 s instead of 10 s.
PW_PORT="$(spare_port)"
PW_SECRET="$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"
PW_SEND_KEY="$(openssl rand -hex 24)"
mkdir -m 700 "$WORK/pushwarden"
env $(env | sed -n 's/^\(PUSHWARDEN_[A-Z0-9_]*\)=.*/-u \1/p' | grep -v PUSHWARDEN_BIN) \
    PUSHWARDEN_LISTEN="127.0.0.1:$PW_PORT" \
    PUSHWARDEN_DATA_DIR="$WORK/pushwarden" \
    PUSHWARDEN_JWT_HS256_SECRET="$PW_SECRET" \
    PUSHWARDEN_SEND_API_KEY="$PW_SEND_KEY" \
    PUSHWARDEN_INSTALLATION_ID="$(cat /proc/sys/kernel/random/uuid)" \
    PUSHWARDEN_LONG_POLL_TIMEOUT=45s \
    PUSHWARDEN_SHUTDOWN_TIMEOUT=2s \
    PUSHWARDEN_NEGOTIATES_PER_MINUTE=100000 \
    PUSHWARDEN_CONNECTS_PER_MINUTE=100000 \
    PUSHWARDEN_ANONYMOUS_CONNECTS_PER_MINUTE=100000 \
    RUST_LOG="${PROXIES_RUST_LOG:-info}" NO_COLOR=1 \
    "$PUSHWARDEN_BIN" serve >"$WORK/pushwarden.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PW_PORT/alive" pushwarden "$!" "$WORK/pushwarden.log"
say "pushwarden on 127.0.0.1:$PW_PORT"

# --- TLS, as the README's examples terminate it: a throwaway CA and a certificate for 127.0.0.1
t="$WORK/tls"
mkdir -p "$t"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=pushwarden proxies test CA" \
    -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$t/key.pem" -out "$t/leaf.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$t/leaf.ext"
openssl x509 -req -in "$t/leaf.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -days 30 \
    -extfile "$t/leaf.ext" -out "$t/leaf.pem" 2>/dev/null
cat "$t/leaf.pem" "$t/ca.pem" >"$t/cert.pem"      # full chain
cat "$t/cert.pem" "$t/key.pem" >"$t/cert+key.pem" # HAProxy's crt form
chmod 644 "$t"/*.pem                              # read by nginx/Apache workers too
# the client (Node) and doctor (--ca-file) trust the throwaway CA
export NODE_EXTRA_CA_CERTS="$t/ca.pem" PROXIES_CA_FILE="$t/ca.pem"

# --- proxies: configs from README.md, one foreground process each --------------------------
node "$DIR/lib/generate.mjs" --readme "$REPO/README.md" --out "$WORK" --upstream "127.0.0.1:$PW_PORT" --tls "$t"

start_proxy() {
    local name="$1" kind="$2" dir="$4" config="$5" log="$4/stderr.log"
    case "$kind" in
        nginx) nginx -p "$dir" -c "$config" -e "$dir/error.log" -g 'daemon off;' >"$log" 2>&1 & ;;
        caddy) HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config" \
            caddy run --config "$config" --adapter caddyfile >"$log" 2>&1 & ;;
        apache) apache2 -d "$dir" -f "$config" -DFOREGROUND >"$log" 2>&1 & ;;
        haproxy) haproxy -f "$config" -db >"$log" 2>&1 & ;;
        *) die "unknown proxy kind $kind" ;;
    esac
    PIDS+=($!)
}
started=()
while IFS=$'\t' read -r name kind port dir config; do
    start_proxy "$name" "$kind" "$port" "$dir" "$config"
    started+=("$name $kind $port $dir ${PIDS[-1]}")
done <"$WORK/instances.tsv"
for s in "${started[@]}"; do
    read -r name kind port dir pid <<<"$s"
    # any HTTP answer will do (the variant without /notifications/ routed answers 404)
    wait_http "https://127.0.0.1:$port/notifications/alive" "$name ($kind)" "$pid" "$dir/stderr.log" --cacert "$t/ca.pem"
done
say "${#started[@]} proxies up (https): $(cut -f1 "$WORK/instances.tsv" | tr '\n' ' ')"

# --- the official client and doctor through every proxy ---------------------------------------
export PROXIES_MANIFEST="$WORK/manifest.json" PROXIES_SERVER="http://127.0.0.1:$PW_PORT" \
    PROXIES_JWT_SECRET="$PW_SECRET" PROXIES_SEND_KEY="$PW_SEND_KEY" PROXIES_LONG_POLL_TIMEOUT_MS=45000 \
    PROXIES_DOCTOR_IDLE=40s PROXIES_CLIENT="$CLIENT" PROXIES_SERVER_LOG="$WORK/pushwarden.log"
status=0
if [ "$#" -gt 0 ]; then FILES=("$@"); else FILES=("$DIR/client.test.mjs" "$DIR/doctor.test.mjs"); fi
node --test --test-concurrency=2 "${FILES[@]}" || status=$?
say "done (exit $status)"
if [ "$status" != 0 ]; then
    for s in "${started[@]}"; do
        read -r name kind port dir pid <<<"$s"
        echo "--- $name: last lines of its logs" >&2
        tail -n 15 "$dir"/*.log >&2 2>/dev/null || true
    done
    echo "--- pushwarden log (last 40 lines)" >&2
    tail -n 40 "$WORK/pushwarden.log" >&2 || true
fi
exit "$status"
