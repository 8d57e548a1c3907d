#!/usr/bin/env bash
# Nightly indicator SQL benchmark: pharmwatch vs DuckDB on the same simulated Parquet lake.
#
#   scripts/bench_nightly.sh                 # full: 2000 enterprises x 60 days (>= 10M records)
#   scripts/bench_nightly.sh --small         # quick functional check (300 enterprises)
#   scripts/bench_nightly.sh --binary target/debug/pharmwatch --small
#   scripts/bench_nightly.sh --help          # all options (--lake, --fresh, --repeats, --json, ...)
#
# Creates the venv .venv-bench (DuckDB from scripts/requirements-bench.txt) if missing, then runs
# scripts/bench_nightly.py with the release binary target/release/pharmwatch unless --binary is
# given. It never builds pharmwatch: build it first (cargo build --release -p pharmwatch).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="${PHARMWATCH_BENCH_VENV:-$root/.venv-bench}"
req="$here/requirements-bench.txt"
python="${PYTHON:-python3}"

# shellcheck source=scripts/bench_venv.sh
. "$here/bench_venv.sh"

binary_given=0
for a in "$@"; do
    case "$a" in
        --binary|--binary=*) binary_given=1 ;;
    esac
done
if [ "$binary_given" -eq 0 ]; then
    set -- --binary "$root/target/release/pharmwatch" "$@"
fi

exec "$venv/bin/python" "$here/bench_nightly.py" "$@"
