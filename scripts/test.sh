#!/usr/bin/env bash
# Runs every test of pushwarden on a fresh machine: installs what the tests need (the pinned npm
# packages of the interop suite, Node.js if missing), builds the workspace, runs the Rust tests,
# then the interop suite with the official @microsoft/signalr clients against the real binary.
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

echo "== cargo build"
cargo build --workspace --all-targets --locked

echo "== cargo test"
cargo test --workspace --locked

echo "== interop tests (@microsoft/signalr)"
PUSHWARDEN_BIN="$PWD/target/debug/pushwarden" tests/interop/run.sh
