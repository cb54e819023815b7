#!/usr/bin/env bash
# Runs edgecam's whole test suite (called by `make test`, which CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgecam/target}"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  echo "run-tests: cargo-nextest not found, using cargo test" >&2
  cargo test --locked --no-fail-fast
fi
