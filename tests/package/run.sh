#!/usr/bin/env bash
# The Debian package, checked as a user would meet it: `cargo deb` builds it, `dpkg -i` installs
# it on this machine, `systemd-analyze verify` accepts the unit and `systemd-analyze security`
# rates its sandbox, the installed binary serves when started the way the unit starts it (its
# user, working directory, environment and command line), the files it creates are its own
# (0700 directory, 0600 database and secrets, with a permissive umask so the modes are
# pushwarden's doing, not the unit's UMask=), and `dpkg --purge` removes it again.
#
# The package is built from the debug binary the test command already built (`--profile dev
# --no-build`), which saves a release build here; users run `cargo deb -p pushwarden`.
set -euo pipefail
cd "$(dirname "$0")/../.."

CARGO_DEB_VERSION=3.8.0
UNIT=/usr/lib/systemd/system/pushwarden.service

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "tests/package/run.sh installs a package: run it as root" >&2
        exit 1
    fi
}
need_root

if ! command -v cargo-deb >/dev/null || ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd-analyze is missing: installing systemd with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq systemd
fi
for tool in dpkg adduser runuser curl; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    dpkg --purge pushwarden >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "ok: $*"; }

test -x target/debug/pushwarden || cargo build --locked -p pushwarden
cargo deb -p pushwarden --profile dev --no-build -o "$work/" 2>&1 | grep -v "dev profile is not supported\|To enable debug symbols" || true
deb=$(ls "$work"/pushwarden_*.deb)
check "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

# A package left by an interrupted run would hide a broken install.
dpkg --purge pushwarden >/dev/null 2>&1 || true
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
check "dpkg -i installed $(dpkg-query -W -f='${Package} ${Version}' pushwarden)"

test -x /usr/bin/pushwarden || fail "/usr/bin/pushwarden missing"
test -f "$UNIT" || fail "$UNIT missing"
systemd-analyze verify "$UNIT" || fail "systemd-analyze verify $UNIT"
check "systemd-analyze verify accepts the unit"
exposure=$(systemd-analyze security --offline=true "$UNIT" 2>/dev/null | sed -n 's/.*Overall exposure level for pushwarden.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze security printed no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure level $exposure > 2.0: the sandbox lost a setting"
check "systemd-analyze security: exposure $exposure (of 10; 'OK' up to 4.9)"

for directive in "User=pushwarden" "ProtectSystem=strict" "StateDirectory=pushwarden" \
    "NoNewPrivileges=yes" "ProtectHome=yes" "PrivateTmp=yes"; do
    grep -qx "$directive" "$UNIT" || fail "the unit lacks $directive"
done
getent passwd pushwarden >/dev/null || fail "no pushwarden user"
[ "$(getent passwd pushwarden | cut -d: -f7)" != /bin/bash ] || fail "the pushwarden user has a login shell"
mode_owner() { stat -c '%a %U:%G' "$1"; }
[ "$(mode_owner /var/lib/pushwarden)" = "700 pushwarden:pushwarden" ] || fail "/var/lib/pushwarden is $(mode_owner /var/lib/pushwarden)"
[ "$(mode_owner /etc/pushwarden)" = "750 root:pushwarden" ] || fail "/etc/pushwarden is $(mode_owner /etc/pushwarden)"
[ "$(mode_owner /etc/pushwarden/pushwarden.toml)" = "640 root:pushwarden" ] || fail "pushwarden.toml is $(mode_owner /etc/pushwarden/pushwarden.toml)"
check "user pushwarden, /var/lib/pushwarden 700, /etc/pushwarden 750 and its file 640 (root:pushwarden)"

# Start the installed binary as the unit would: its user, directory, environment, command.
unit_value() { sed -n "s/^$1=//p" "$UNIT"; }
user=$(unit_value User)
workdir=$(unit_value WorkingDirectory)
exec_start=$(unit_value ExecStart)
mapfile -t unit_env < <(unit_value Environment)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Only the listening port differs from the unit (5000 may be taken on a test machine).
(cd "$workdir" && umask 022 && exec runuser -u "$user" -- env -i PATH=/usr/bin:/bin \
    "${unit_env[@]}" PUSHWARDEN_LISTEN="127.0.0.1:$port" $exec_start) >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/alive" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; fail "the installed binary exited"; }
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/alive" >/dev/null || { cat "$work/serve.log" >&2; fail "no answer on /alive"; }
health=$(curl -fsS "http://127.0.0.1:$port/health")
echo "$health" | grep -q '"status"' || fail "/health answered $health"
check "the installed binary serves (/alive, /health) as user $user"

# What it created: nothing readable by others, owned by the service user.
[ -f /var/lib/pushwarden/pushwarden.db ] || fail "no database in /var/lib/pushwarden"
while IFS= read -r f; do
    m=$(mode_owner "$f")
    case "$m" in
        "600 pushwarden:pushwarden") ;;
        *) fail "$f is $m, expected 600 pushwarden:pushwarden" ;;
    esac
done < <(find /var/lib/pushwarden -mindepth 1 -type f)
[ "$(mode_owner /var/lib/pushwarden)" = "700 pushwarden:pushwarden" ] || fail "/var/lib/pushwarden is now $(mode_owner /var/lib/pushwarden)"
check "files in /var/lib/pushwarden: $(cd /var/lib/pushwarden && find . -mindepth 1 -type f -printf '%f ' ) all 600 pushwarden:pushwarden (umask was 022)"

kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
dpkg --purge pushwarden >/dev/null
[ ! -e /usr/bin/pushwarden ] || fail "/usr/bin/pushwarden left after purge"
[ ! -e /var/lib/pushwarden ] || fail "/var/lib/pushwarden left after purge"
check "dpkg --purge removed the binary, the unit and the state"
echo "package: all checks passed"
