#!/usr/bin/env bash
# Anomaly model benchmark: pharmwatch's model vs scikit-learn's IsolationForest (5 seeds) and
# PyOD's ECOD, COPOD, HBOS and KNN, same labelled tables — held-out tables only.
#
#   scripts/bench_model.sh                      # everything: build, held-out public tables, simulator tables (seed 7)
#   scripts/bench_model.sh --select             # candidate ensembles on the selection tables (simulator seed 1)
#   scripts/bench_model.sh --seeds 5 --out /tmp/model.json
#   scripts/bench_model.sh --no-build           # use the existing target/release/pharmwatch
#   scripts/bench_model.sh --binary PATH        # use PATH (implies --no-build)
#   scripts/bench_model.sh --no-sim             # public tables only
#   scripts/bench_model.sh --skip-pharmwatch    # the sklearn half only: no build, no simulator
#   scripts/bench_model.sh --datasets glass wine --table NAME=PATH:COL,COL   # see --help
#
# Stages:
#   1. the venv .venv-bench with scripts/requirements-bench.txt (re)installed when it changed;
#   2. the Debian package r-cran-mlbench (the UCI tables as .rda) when missing (apt-get, as root
#      or through sudo);
#   3. cargo build --release -p pharmwatch (unless --no-build / --binary / --skip-pharmwatch);
#   4. the public tables as CSV under $BENCH_DATA (default /tmp/pharmwatch-bench-data), cached;
#   5. simulator tables (unless --no-sim / --skip-pharmwatch): `pharmwatch simulate` (300
#      enterprises, seed 7 — seed 1 with --select, so the ensemble is never chosen on a
#      reported table), `pharmwatch nightly` over the last 14 simulated days, which writes
#      out/features.csv, then bench_model.py label-sim labels its rows with the lake's labels.csv
#      and writes one table per segment plus one for all rows (under $BENCH_DATA/sim-e300-s7);
#   6. bench_model.py run: every held-out table, pharmwatch and IsolationForest over --seeds
#      seeds, the PyOD baselines once (deterministic); prints the table and the summary
#      ("within noise" where a difference is within the seeds' spread), writes JSON to --out
#      (default /tmp/pharmwatch-bench-model.json). With --select: bench_model.py select.
# Options not listed here go to bench_model.py run/select (--seeds, --seed, --datasets, --table,
# --force, --no-public, ...; --out to run only). Exit code: 0, 1 on a pharmwatch error, 2 on a rows/features mismatch.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="${PHARMWATCH_BENCH_VENV:-$root/.venv-bench}"
req="$here/requirements-bench.txt"
python="${PYTHON:-python3}"
export BENCH_DATA="${BENCH_DATA:-/tmp/pharmwatch-bench-data}"

build=1
sim=1
skip_pw=0
binary="$root/target/release/pharmwatch"
sim_enterprises=300
sim_seed=7
select=0
sim_days=14
sim_dir=""
py_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
            echo "Own options: --select --no-build --no-sim --binary PATH --sim-enterprises N (300)"
            echo "  --sim-seed N (7) --sim-days N (14) --sim-dir DIR (\$BENCH_DATA/sim-eN-sN)"
            echo
            if [ -x "$venv/bin/python" ]; then
                exec "$venv/bin/python" "$here/bench_model.py" run --help
            fi
            exit 0 ;;
        --no-build) build=0 ;;
        --no-sim) sim=0 ;;
        --select) select=1; sim_seed=1 ;;
        --skip-pharmwatch) skip_pw=1; py_args+=("$1") ;;
        --binary) binary="$2"; build=0; shift ;;
        --binary=*) binary="${1#*=}"; build=0 ;;
        --sim-enterprises) sim_enterprises="$2"; shift ;;
        --sim-seed) sim_seed="$2"; shift ;;
        --sim-days) sim_days="$2"; shift ;;
        --sim-dir) sim_dir="$2"; shift ;;
        *) py_args+=("$1") ;;
    esac
    shift
done
if [ "$skip_pw" -eq 1 ]; then
    build=0
    sim=0
fi
sim_dir="${sim_dir:-$BENCH_DATA/sim-e$sim_enterprises-s$sim_seed}"

# 1. venv
# shellcheck source=scripts/bench_venv.sh
. "$here/bench_venv.sh"
py="$venv/bin/python"

# 2. Debian packages
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "error: root needed to apt-get install ${missing[*]}" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "installing Debian package(s): ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
if [ -n "${MLBENCH_DATA:-}" ]; then
    :  # the .rda files are somewhere else: nothing to install
elif command -v dpkg-query >/dev/null 2>&1; then
    apt_install r-cran-mlbench
else
    echo "warning: not a Debian system: install the R package mlbench or set MLBENCH_DATA" >&2
fi

# 3. pharmwatch
if [ "$build" -eq 1 ]; then
    echo "cargo build --release -p pharmwatch" >&2
    (cd "$root" && cargo build --release -p pharmwatch)
fi
if [ "$skip_pw" -eq 0 ] && [ ! -x "$binary" ]; then
    echo "error: pharmwatch binary $binary not found" >&2
    exit 1
fi

# 4. public tables (cached; `run` would prepare them too, this keeps the stages apart in the log)
"$py" "$here/bench_model.py" prepare

# 5. simulator tables
sim_tables=()
if [ "$sim" -eq 1 ]; then
    lake="$sim_dir/lake"
    out="$sim_dir/out"
    mkdir -p "$sim_dir"
    rm -rf "$lake" "$out" "$sim_dir/tables"
    echo "simulating $sim_enterprises enterprises (seed $sim_seed) into $lake" >&2
    if ! "$binary" simulate --out "$lake" --enterprises "$sim_enterprises" --seed "$sim_seed" \
        --quiet >"$sim_dir/simulate.log" 2>&1; then
        tail -20 "$sim_dir/simulate.log" >&2
        exit 1
    fi
    end="$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["end"])' "$lake/manifest.json")"
    from="$("$py" -c 'import datetime as d, sys; print(d.date.fromisoformat(sys.argv[1]) - d.timedelta(days=int(sys.argv[2]) - 1))' "$end" "$sim_days")"
    echo "nightly $from … $end into $out" >&2
    if ! "$binary" nightly --lake "$lake" --from "$from" --to "$end" --out "$out" \
        --quiet >"$sim_dir/nightly.log" 2>&1; then
        tail -20 "$sim_dir/nightly.log" >&2
        exit 1
    fi
    if [ ! -f "$out/features.csv" ]; then
        echo "error: $binary nightly wrote no $out/features.csv (too old a build?); use --no-sim" >&2
        exit 1
    fi
    # One NAME=PATH:EXCLUDE_COLS line per table (a failure here stops the script: set -e).
    labelled="$("$py" "$here/bench_model.py" label-sim --features "$out/features.csv" \
        --labels "$lake/labels.csv" --out-dir "$sim_dir/tables")"
    while IFS= read -r t; do
        if [ -n "$t" ]; then
            sim_tables+=(--table "$t")
        fi
    done <<<"$labelled"
fi

# 6. the comparison (or the choice of the ensemble)
command=run
if [ "$select" -eq 1 ]; then
    command=select
fi
run_args=(--binary "$binary")
if [ "${#py_args[@]}" -gt 0 ]; then
    run_args+=("${py_args[@]}")
fi
if [ "${#sim_tables[@]}" -gt 0 ]; then
    run_args+=("${sim_tables[@]}")
fi
exec "$py" "$here/bench_model.py" "$command" "${run_args[@]}"
