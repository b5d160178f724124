#!/usr/bin/env bash
# Runs every test of pushwarden on a fresh machine: installs what the tests need (the pinned npm
# and PyPI packages of the interop suites, Node.js and Python if missing), builds the workspace,
# runs the Rust tests, then the interop suites against the real binary: the official
# @microsoft/signalr clients and two independent Python clients (pysignalr, signalrcore), plus a
# Web Push decryption by Python's http_ece; the README's reverse-proxy configurations under
# nginx, Caddy, Apache and HAProxy; the admin page in Debian's headless Chromium; the Debian
# package, built, installed with dpkg and checked with systemd-analyze (what these need is
# installed with apt-get or cargo install if missing); and a smoke run of every fuzz target.
# Starts PostgreSQL if it is down.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo is required (https://rustup.rs)" >&2
    exit 1
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "Node.js is missing: installing it with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq nodejs npm
fi
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "Python 3 with venv is missing: installing it with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq python3 python3-venv
fi

# The fake Web Push service decrypts with Mozilla's `ece`, which builds on OpenSSL's headers.
if ! pkg-config --exists openssl 2>/dev/null; then
    echo "OpenSSL headers (libssl-dev) are missing: installing them with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config
fi

# The push registry's tests run on SQLite and on PostgreSQL (localhost:5432, trust auth, as this
# machine is set up); start PostgreSQL if it is down, install it if it is missing.
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! pg_ready; then
    if ! command -v pg_ctlcluster >/dev/null; then
        echo "PostgreSQL is missing: installing it with apt-get" >&2
        apt-get update -qq && apt-get install -y -qq postgresql
    fi
    echo "PostgreSQL is not answering on 127.0.0.1:5432: starting it" >&2
    for version in $(ls /etc/postgresql 2>/dev/null); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
    pg_ready || { echo "PostgreSQL did not start" >&2; exit 1; }
fi

echo "== cargo build"
cargo build --workspace --all-targets --locked

echo "== cargo test"
cargo test --workspace --locked

echo "== README quickstart (pushwarden-fake apns | fcm | webpush, serve, register, send)"
tests/quickstart/run.sh

echo "== interop tests (@microsoft/signalr)"
PUSHWARDEN_BIN="$PWD/target/debug/pushwarden" tests/interop/run.sh

echo "== interop tests (pysignalr, signalrcore, http_ece Web Push decryption, OpenAPI)"
PUSHWARDEN_BIN="$PWD/target/debug/pushwarden" tests/interop-python/run.sh

echo "== reverse proxies (nginx, Caddy, Apache, HAProxy)"
PUSHWARDEN_BIN="$PWD/target/debug/pushwarden" tests/proxies/run.sh

echo "== admin page in headless Chromium (Debian's chromium, playwright-core; screenshot in target/artefacts/admin.png)"
PUSHWARDEN_BIN="$PWD/target/debug/pushwarden" tests/admin/run.sh

echo "== Debian package (cargo deb, dpkg -i, systemd-analyze verify, the installed binary serves, purge)"
tests/package/run.sh

echo "== fuzz smoke (every cargo-fuzz target over its corpus and a few seconds more)"
scripts/fuzz.sh --smoke
