#!/usr/bin/env bash
# Runs every check and test of pharmwatch: formatting, lints, unit, SQL-fixture and end-to-end
# tests. Installs what the tests need when it is missing (today: only the Rust toolchain's own
# rustfmt and clippy components). Run from anywhere: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: $1 is required: $2" >&2
    exit 1
  fi
}
need cargo "install Rust with rustup (https://rustup.rs), then rerun scripts/test.sh"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test --workspace"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
# The runner's closing lines, summed, so CI logs end with one count.
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: ${passed} passed, ${failed} failed"
[ "${failed}" -eq 0 ]
