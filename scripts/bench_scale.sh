#!/usr/bin/env bash
# The nightly job at 1k, 2k, 5k and 10k enterprises x 60 days: a real next night's wall time and
# peak RSS, rules only and with the model, beside DuckDB on the same SQL and files.
#
#   scripts/bench_scale.sh                       # all four sizes (about an hour on 2 cores)
#   scripts/bench_scale.sh --sizes 1000,2000     # some of them
#   scripts/bench_scale.sh --help                # options (--repeats, --prune, --lake-dir, ...)
#
# Creates the venv .venv-bench (DuckDB) if missing, then runs scripts/bench_scale.py with the
# release binary target/release/pharmwatch. It never builds pharmwatch: build it first
# (cargo build --release -p pharmwatch).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="${PHARMWATCH_BENCH_VENV:-$root/.venv-bench}"
req="$here/requirements-bench.txt"
python="${PYTHON:-python3}"

# shellcheck source=scripts/bench_venv.sh
. "$here/bench_venv.sh"

exec "$venv/bin/python" "$here/bench_scale.py" "$@"
