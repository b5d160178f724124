#!/usr/bin/env bash
# Runs every test of pushwarden on a fresh machine: installs what the tests need (the pinned npm
# and PyPI packages of the interop suites, Node.js and Python if missing), builds the workspace,
# runs the Rust tests, then the interop suites against the real binary: the official
# @microsoft/signalr clients and two independent Python clients (pysignalr, signalrcore).
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

echo "== cargo build"
cargo build --workspace --all-targets --locked

echo "== cargo test"
cargo test --workspace --locked

echo "== interop tests (@microsoft/signalr)"
PUSHWARDEN_BIN="$PWD/target/debug/pushwarden" tests/interop/run.sh

echo "== interop tests (pysignalr, signalrcore)"
PUSHWARDEN_BIN="$PWD/target/debug/pushwarden" tests/interop-python/run.sh
