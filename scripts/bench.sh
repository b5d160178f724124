#!/usr/bin/env bash
# Reruns every figure of BENCHMARKS.md: builds release binaries, then for each figure starts a
# fresh pushwarden on 127.0.0.1:5555, runs pushwarden-bench against it, and stops it. Results
# (one JSON file per figure) go to $OUT (default: target/bench-results), and a summary table is
# printed at the end. Loopback only; every run is bounded in time. Takes about 4 minutes.
#
#   scripts/bench.sh            # everything
#   scripts/bench.sh idle churn # some figures: idle unicast fanout throughput churn
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-target/bench-results}
PORT=${PORT:-5555}
IDLE_N=${IDLE_N:-19000}       # the per-process file limit here is 20,000
MEMBERS=${MEMBERS:-10000}
DURATION=${DURATION:-20s}
figures=("$@")
[ ${#figures[@]} -eq 0 ] && figures=(idle unicast fanout throughput churn)

cargo build --release --locked -p pushwarden -p pushwarden-bench >&2
SERVER=target/release/pushwarden
BENCH=target/release/pushwarden-bench
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"' EXIT

# An RSA key pair for the RS256 churn figure.
openssl genrsa -out "$work/rsa.pem" 2048 2>/dev/null
openssl rsa -in "$work/rsa.pem" -pubout -out "$work/rsa.pub.pem" 2>/dev/null

pid=""
start_server() {
    env PUSHWARDEN_LISTEN=127.0.0.1:$PORT PUSHWARDEN_JWT_HS256_SECRET=bench-secret \
        PUSHWARDEN_SEND_API_KEY=bench-key PUSHWARDEN_JWT_RSA_PUBLIC_KEY="$work/rsa.pub.pem" \
        PUSHWARDEN_DATA_DIR="$work/data" RUST_LOG=warn \
        "$SERVER" serve >"$work/server.out" 2>"$work/server.err" &
    pid=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$work/server.out" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server did not start" >&2
    cat "$work/server.err" >&2
    exit 1
}
stop_server() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
hub=(--url "http://127.0.0.1:$PORT/hub" --secret bench-secret --send-key bench-key)

for figure in "${figures[@]}"; do
    echo "== $figure" >&2
    case $figure in
    idle)
        start_server
        "$BENCH" idle "${hub[@]}" -n "$IDLE_N" --processes 2 --server-pid "$pid" \
            --settle 5s --hold 35s >"$OUT/idle.json"
        stop_server
        ;;
    unicast)
        start_server
        "$BENCH" unicast "${hub[@]}" -n "$MEMBERS" --server-pid "$pid" --rate 2000 \
            --duration "$DURATION" >"$OUT/unicast.json"
        stop_server
        ;;
    fanout)
        "$BENCH" raw -n "$MEMBERS" --rate 10 --duration "$DURATION" >"$OUT/raw-rate10.json"
        start_server
        "$BENCH" fanout "${hub[@]}" -n "$MEMBERS" --server-pid "$pid" --rate 10 \
            --duration "$DURATION" --compare-raw "$OUT/raw-rate10.json" >"$OUT/fanout-rate10.json"
        stop_server
        ;;
    throughput)
        "$BENCH" raw -n "$MEMBERS" --in-flight 16 --duration 15s >"$OUT/raw-max.json"
        start_server
        "$BENCH" fanout "${hub[@]}" -n "$MEMBERS" --server-pid "$pid" --in-flight 16 \
            --duration 15s --compare-raw "$OUT/raw-max.json" >"$OUT/fanout-max.json"
        stop_server
        ;;
    churn)
        start_server
        "$BENCH" churn "${hub[@]}" -n 0 --concurrency 64 --duration 15s --server-pid "$pid" \
            >"$OUT/churn-hs256.json"
        "$BENCH" churn "${hub[@]}" -n 0 --concurrency 64 --duration 15s --server-pid "$pid" \
            --rsa-private-key "$work/rsa.pem" --processes 2 --tokens 4000 >"$OUT/churn-rs256.json"
        stop_server
        ;;
    *)
        echo "unknown figure $figure (idle unicast fanout throughput churn)" >&2
        exit 2
        ;;
    esac
done

python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None
rows = []
d = load("idle.json")
if d:
    rows.append(("idle connections held", f"{d['connections']} of {d['connections_requested']}, {d['lost_connections']} lost"))
    rows.append(("server RSS per idle connection", f"{d['server_rss_per_connection_bytes']:.0f} B ({d['server_rss_before_kib']} -> {d['server_rss_after_kib']} KiB)"))
d = load("unicast.json")
if d:
    l = d["delivery_latency_us"]
    rows.append(("/send -> client at 2,000/s", f"p50 {l['p50']/1000:.2f} ms, p99 {l['p99']/1000:.2f} ms ({d['achieved_rate']:.0f}/s achieved)"))
d, r = load("fanout-rate10.json"), load("raw-rate10.json")
if d:
    l, rl = d["notification_latency_us"], r["notification_latency_us"]
    rows.append(("fan-out to 10,000 at 10/s, whole fan-out", f"p50 {l['p50']/1000:.1f} ms, p99 {l['p99']/1000:.1f} ms (raw ceiling: p50 {rl['p50']/1000:.1f}, p99 {rl['p99']/1000:.1f} ms)"))
d, r = load("fanout-max.json"), load("raw-max.json")
if d:
    rows.append(("fan-out throughput, 10,000 members", f"{d['deliveries_per_second']:.0f} deliveries/s; raw ceiling {r['deliveries_per_second']:.0f}/s; ratio {d['deliveries_per_second']/r['deliveries_per_second']:.2f}"))
for name, label in (("churn-hs256.json", "connects/s, HS256"), ("churn-rs256.json", "connects/s, RS256")):
    d = load(name)
    if d:
        rows.append((label, f"{d['connects_per_second']:.0f}/s, {d['churn_connect_failures']} failed, server {d['server_cpu_us_per_connect']:.0f} us CPU each"))
print("| figure | measured |\n|---|---|")
for k, v in rows:
    print(f"| {k} | {v} |")
EOF
