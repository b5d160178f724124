#!/usr/bin/env bash
# Reruns every figure of BENCHMARKS.md: builds release binaries, then for each figure starts a
# fresh pushwarden on 127.0.0.1:5555, runs pushwarden-bench against it, and stops it. Results
# (one JSON file per figure) go to $OUT (default: target/bench-results), and a summary table is
# printed at the end. Loopback only; every run is bounded in time. Takes about 5 minutes.
#
#   scripts/bench.sh            # everything
#   scripts/bench.sh idle churn # some figures: idle unicast fanout throughput churn push push-org
#   PUSH_DBS=sqlite scripts/bench.sh push-org   # the organization runs alone, on SQLite only
#
# `push` runs the push gateway against an in-process fake FCM on the default SQLite database (a
# fresh file) and on PostgreSQL (a fresh database created with psql on $PG_HOST:$PG_PORT as
# $PG_USER, dropped afterwards; skipped when psql is missing), then the organization runs below
# on each. $PUSH_DBS picks the databases (default "sqlite postgres").
#
# The organization runs (`push-org` alone, or after the rest of `push`): the bench hosts fake
# FCM, APNs and Web Push and writes the server's files and variables (server.env); two relay
# installations are created with `pushwarden installation create` on the fresh database before
# the server starts, with the relay's per-installation limits raised. Installation A registers
# $PUSH_ORG_DEVICES devices (half Android, 30 % iOS, 20 % Web Push) in one organization and sends
# $PUSH_ORG_PUSHES organization pushes; installation B's single-device pushes, $PUSH_ORG_B_RATE per
# second, give send -> provider alone ($PUSH_ORG_IDLE) and while A's pushes are delivered. With
# PUSH_ORG_REGISTER=local (the default) A's devices are registered with the /send key and ids
# already prefixed as the relay prefixes them, because the relay counts the installation's devices
# on every registration; `relay` registers them with A's token. Results: push-org-<db>.json.
# One organization run at the default sizes took about 5 minutes on SQLite here (100 s of it
# registering).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-target/bench-results}
PORT=${PORT:-5555}
IDLE_N=${IDLE_N:-19000}       # the per-process file limit here is 20,000
MEMBERS=${MEMBERS:-10000}
DURATION=${DURATION:-20s}
FAKE_PORT=${FAKE_PORT:-5556}  # the push figure's fake FCM
PUSH_DEVICES=${PUSH_DEVICES:-1000}
PUSH_USERS=${PUSH_USERS:-100}
PUSH_SENDS=${PUSH_SENDS:-5000}
PUSH_RATE=${PUSH_RATE:-100}    # /push/send per second in the latency run,
PUSH_RATE_SENDS=${PUSH_RATE_SENDS:-2000}  # for 20 s
PUSH_DBS=${PUSH_DBS:-sqlite postgres}
PUSH_ORG_DEVICES=${PUSH_ORG_DEVICES:-100000}
PUSH_ORG_PUSHES=${PUSH_ORG_PUSHES:-5}
PUSH_ORG_REGISTER=${PUSH_ORG_REGISTER:-local}  # or relay
PUSH_ORG_B_RATE=${PUSH_ORG_B_RATE:-20}  # B's single-device pushes per second,
PUSH_ORG_IDLE=${PUSH_ORG_IDLE:-10s}     # alone for this long, then during A's pushes
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
figures=("$@")
[ ${#figures[@]} -eq 0 ] && figures=(idle unicast fanout throughput churn push)
for db in $PUSH_DBS; do
    case $db in sqlite | postgres) ;; *) echo "PUSH_DBS: unknown database $db" >&2; exit 2 ;; esac
done

cargo build --release --locked -p pushwarden -p pushwarden-bench >&2
SERVER=target/release/pushwarden
BENCH=target/release/pushwarden-bench
mkdir -p "$OUT"
work=$(mktemp -d)
pg_db=""
bench_pid=""  # a push bench running in the background
trap 'stop_server; stop_bench; drop_pg_db; rm -rf "$work"' EXIT

# An RSA key pair for the RS256 churn figure.
openssl genrsa -out "$work/rsa.pem" 2048 2>/dev/null
openssl rsa -in "$work/rsa.pem" -pubout -out "$work/rsa.pub.pem" 2>/dev/null

pid=""
# start_server [VAR=value ...]: extra environment for this server (it wins over the defaults).
start_server() {
    env PUSHWARDEN_LISTEN=127.0.0.1:$PORT PUSHWARDEN_JWT_HS256_SECRET=bench-secret \
        PUSHWARDEN_SEND_API_KEY=bench-key PUSHWARDEN_JWT_RSA_PUBLIC_KEY="$work/rsa.pub.pem" \
        PUSHWARDEN_DATA_DIR="$work/data" RUST_LOG=warn \
        PUSHWARDEN_CONNECTS_PER_MINUTE=0 PUSHWARDEN_NEGOTIATES_PER_MINUTE=0 \
        PUSHWARDEN_ANONYMOUS_CONNECTS_PER_MINUTE=0 "$@" \
        "$SERVER" serve >"$work/server.out" 2>"$work/server.err" &
    pid=$!
    # For a bench started before the server (push): it reads the pid once the server answers.
    echo "$pid" >"$work/server.pid"
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

psql_admin() {
    PGOPTIONS="-c client_min_messages=warning" psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -q "$@"
}
stop_bench() {
    if [ -n "$bench_pid" ]; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
        bench_pid=""
    fi
}
drop_pg_db() {
    if [ -n "$pg_db" ]; then
        psql_admin -c "DROP DATABASE IF EXISTS $pg_db" >&2 || true
        pg_db=""
    fi
}

# push_run NAME BENCH-ARGS... -- SERVER-ENV...: the bench first (it hosts the fake FCM and
# writes its service account), then a fresh server delivering to that fake; result in
# $OUT/push-NAME.json.
push_run() {
    local name=$1 bench_args=() server_env=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do bench_args+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    server_env=("$@")
    local account="$work/fcm-service-account.json"
    rm -f "$account" "$work/server.pid"
    "$BENCH" push --url "http://127.0.0.1:$PORT" --send-key bench-key \
        --fake-listen "127.0.0.1:$FAKE_PORT" --service-account "$account" \
        --server-pid-file "$work/server.pid" --devices "$PUSH_DEVICES" --users "$PUSH_USERS" \
        --ready-timeout 60s "${bench_args[@]}" >"$OUT/push-$name.json" &
    bench_pid=$!
    for _ in $(seq 200); do
        [ -s "$account" ] && break
        kill -0 "$bench_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ ! -s "$account" ]; then
        echo "the push bench did not write $account" >&2
        exit 1
    fi
    start_server PUSHWARDEN_FCM_SERVICE_ACCOUNT="$account" \
        PUSHWARDEN_FCM_ENDPOINT="http://127.0.0.1:$FAKE_PORT" "${server_env[@]}"
    wait "$bench_pid"
    bench_pid=""
    stop_server
}

# push_figure DB SERVER-ENV...: the throughput run and the paced latency run on one database,
# each with a fresh server and a fresh database.
# fresh_database DB: an empty database of kind DB (a new PostgreSQL database, dropped by
# drop_pg_db, or a new SQLite directory); the server's variables for it in db_env.
fresh_database() {
    if [ "$1" = postgres ]; then
        pg_db="pushwarden_bench_$$"
        psql_admin -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db" >&2
        db_env=(PUSHWARDEN_DATABASE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$pg_db")
    else
        rm -rf "$work/push-data"
        db_env=(PUSHWARDEN_DATA_DIR="$work/push-data")
    fi
}

push_figure() {
    local db=$1
    shift
    local run
    for run in max rate; do
        local args=(--rate max --sends "$PUSH_SENDS")
        [ "$run" = rate ] && args=(--rate "$PUSH_RATE" --sends "$PUSH_RATE_SENDS" --no-baseline)
        fresh_database "$db"
        local env=("$@" "${db_env[@]}")
        local pg_cpu_before=""
        [ "$db" = postgres ] && pg_cpu_before=$(scripts/pg-cpu.sh)
        push_run "$db-$run" "${args[@]}" -- "${env[@]}"
        if [ "$db" = postgres ]; then
            # What the run cost the database itself, now that the server's connections closed:
            # CPU (every postgres process, exited backends included) and, from its statistics,
            # commits and row operations. Waits a moment for the backends to exit.
            sleep 1
            local ticks=$(( $(scripts/pg-cpu.sh) - pg_cpu_before ))
            psql_admin -At -F ' ' -c "SELECT xact_commit, tup_inserted, tup_updated, \
                tup_deleted, tup_returned, tup_fetched FROM pg_stat_database \
                WHERE datname = '$pg_db'" | {
                read -r commits inserted updated deleted returned fetched
                printf '{"cpu_seconds": %s, "commits": %s, "rows_inserted": %s, "rows_updated": %s, "rows_deleted": %s, "rows_returned": %s, "rows_fetched": %s}\n' \
                    "$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')" \
                    "$commits" "$inserted" "$updated" "$deleted" "$returned" "$fetched"
            } >"$OUT/push-$db-$run.database.json"
        fi
        drop_pg_db
    done
}

# push_org_run DB: the organization run on a fresh database of kind DB, result in
# $OUT/push-org-DB.json. The bench starts first (it hosts the fakes and writes server.env, the
# server's variables for them); the installations are created before the server starts.
push_org_run() {
    local db=$1
    fresh_database "$db"
    local env=("${db_env[@]}")
    local dir="$work/push-org"
    rm -rf "$dir" "$work/server.pid"
    mkdir -p "$dir"
    local i
    for i in a b; do
        # Prints `id:  …` and `key: …`, which the bench reads; the file stays in $work.
        if ! env PUSHWARDEN_DATA_DIR="$work/data" "${env[@]}" "$SERVER" installation create \
            --email "bench-$i@example.com" >"$dir/installation-$i.txt" 2>"$dir/installation.err"; then
            cat "$dir/installation.err" >&2
            exit 1
        fi
    done
    "$BENCH" push-org --url "http://127.0.0.1:$PORT" --send-key bench-key --dir "$dir/files" \
        --installation-a "$dir/installation-a.txt" --installation-b "$dir/installation-b.txt" \
        --server-pid-file "$work/server.pid" --org-devices "$PUSH_ORG_DEVICES" \
        --org-pushes "$PUSH_ORG_PUSHES" --org-register "$PUSH_ORG_REGISTER" \
        --b-rate "$PUSH_ORG_B_RATE" --idle "$PUSH_ORG_IDLE" --ready-timeout 60s \
        >"$OUT/push-org-$db.json" &
    bench_pid=$!
    for _ in $(seq 600); do
        [ -s "$dir/files/server.env" ] && break
        kill -0 "$bench_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ ! -s "$dir/files/server.env" ]; then
        echo "the push-org bench did not write $dir/files/server.env" >&2
        exit 1
    fi
    local fakes_env
    mapfile -t fakes_env <"$dir/files/server.env"
    # The relay's per-installation limits (600 requests and 1,200 pushes a minute, 100,000
    # devices) would stop the bench long before it measures anything.
    start_server "${fakes_env[@]}" PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE=1000000000 \
        PUSHWARDEN_RELAY_PUSHES_PER_MINUTE=1000000000 PUSHWARDEN_RELAY_MAX_REGISTRATIONS=1000000000 \
        "${env[@]}"
    wait "$bench_pid"
    bench_pid=""
    stop_server
    drop_pg_db
}

# The databases of $PUSH_DBS that can be used here.
push_dbs() {
    local db
    for db in $PUSH_DBS; do
        if [ "$db" = postgres ] && ! command -v psql >/dev/null; then
            echo "psql not found: the PostgreSQL half of the push figures is skipped" >&2
            continue
        fi
        echo "$db"
    done
}

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
    push | push-org)
        dbs=$(push_dbs)
        if [ "$figure" = push ]; then
            for db in $dbs; do push_figure "$db"; done
        fi
        for db in $dbs; do push_org_run "$db"; done
        ;;
    *)
        echo "unknown figure $figure (idle unicast fanout throughput churn push push-org)" >&2
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
for db in ("sqlite", "postgres"):
    d, r = load(f"push-{db}-max.json"), load(f"push-{db}-rate.json")
    if d:
        a = d["accept_latency_us"]
        b = d.get("baseline") or {}
        rows.append((f"push gateway ({db}), as fast as it goes",
            f"{d['deliveries_per_second']:.0f} deliveries/s ({d['deliveries']} of {d['deliveries_expected']}, {d['deliveries_missing']} missing); "
            f"/push/send {d['achieved_rate']:.0f}/s, accept p50 {a['p50']/1000:.1f} ms, p99 {a['p99']/1000:.1f} ms; "
            f"baseline {b.get('deliveries_per_second') or 0:.0f}/s, ratio {d.get('ratio_to_baseline')}"))
    if r:
        a, l = r["accept_latency_us"], r["delivery_latency_us"]
        rows.append((f"push gateway ({db}), {r['target_rate']:.0f} /push/send per second",
            f"accept p50 {a['p50']/1000:.1f} ms, p99 {a['p99']/1000:.1f} ms; send -> provider p50 {l['p50']/1000:.1f} ms, p99 {l['p99']/1000:.1f} ms; "
            f"{r['deliveries']} of {r['deliveries_expected']} delivered, {r['deliveries_missing']} missing"))
for db in ("sqlite", "postgres"):
    d = load(f"push-org-{db}.json")
    if not d:
        continue
    ld, dl, b = d["load"], d["deliveries"], d.get("baseline") or {}
    acc = ld["org_accept_latency_us"] or {}
    ms = lambda us: f"{us/1000:.1f}" if us is not None else "-"
    rows.append((f"organization push, {d['org_devices']:,} devices ({db})",
        f"{d['org_pushes']} pushes: accept p99 {ms(acc.get('p99'))} ms, max {ms(acc.get('max'))} ms; "
        f"first push -> last delivery {ld['first_push_to_last_delivery_seconds']:.1f} s "
        f"({ld['deliveries_per_second']} deliveries/s, {ld['seconds_per_push']} s per push; first push alone {ld['first_push_seconds']} s); "
        f"last delivery by provider FCM / APNs / Web Push {' / '.join(str((ld.get('by_provider') or {}).get(p, {}).get('first_push_to_last_delivery_seconds')) for p in ('fcm', 'apns', 'webpush'))} s; "
        f"baseline {b.get('seconds')} s for one push's deliveries, ratio {d.get('seconds_per_push_over_baseline')} per push, {d.get('first_push_over_baseline')} first push; "
        f"{dl['delivered']} of {dl['expected']} delivered, {dl['missing']} missing, {dl['duplicate']} duplicate, {dl['unexpected']} unexpected; "
        f"server peak RSS {d['server_rss_peak_kib'] / 1024:.1f} MiB"))
    il, ll = d["idle"]["b_delivery_latency_us"] or {}, ld["b_delivery_latency_us"] or {}
    rows.append((f"another installation's pushes during it ({db})",
        f"send -> provider p50/p99/max idle {ms(il.get('p50'))} / {ms(il.get('p99'))} / {ms(il.get('max'))} ms, "
        f"under load {ms(ll.get('p50'))} / {ms(ll.get('p99'))} / {ms(ll.get('max'))} ms; p99 ratio {ld['b_p99_ratio_to_idle']} (target <= 3)"))
print("| figure | measured |\n|---|---|")
for k, v in rows:
    print(f"| {k} | {v} |")
EOF
