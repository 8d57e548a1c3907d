#!/usr/bin/env bash
# Runs every check and test of pharmwatch: formatting, lints, unit, SQL-fixture, end-to-end and
# broker tests. Installs what the tests need when it is missing (the toolchain's rustfmt and
# clippy; tansu, the Kafka-protocol broker of the stream tests, with `cargo install` — about
# 15 minutes the first time; headless Chromium and CJK fonts from Debian for the rendered
# documents; Prometheus and node_exporter from Debian for the dashboards test; PostgreSQL 15
# from Debian for the store's second backend; DuckDB from PyPI for the nightly regression
# guard), starts the broker and a throwaway PostgreSQL server on free loopback ports for the
# run and stops them at the end. The suite is built once, with the `ci` profile (Cargo.toml:
# dependencies optimised as for a release, the project's crates with overflow checks and debug
# assertions), and the last step, the nightly-vs-DuckDB ratio guard, times that build's binary.
# Each step's line shows the minutes and seconds since the start.
# Run from anywhere: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '== [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }
# A whole-suite run gains nothing from incremental compilation and it costs gigabytes of disk
# (CI builds from a clean clone); set CARGO_INCREMENTAL=1 to keep it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: $1 is required: $2" >&2
    exit 1
  fi
}
need cargo "install Rust with rustup (https://rustup.rs), then rerun scripts/test.sh"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# The broker for the stream tests (see DEVELOPERS.md).
tansu_bin() {
  if command -v tansu >/dev/null 2>&1; then command -v tansu
  elif [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
  fi
}
if [ -z "$(tansu_bin)" ]; then
  step "installing tansu 0.6.0 (Kafka-protocol broker for the stream tests; ~15 minutes, once)"
  cargo install tansu --version 0.6.0 --locked --features dynostore,libsql
fi
TANSU=$(tansu_bin)
[ -n "$TANSU" ] || { echo "error: tansu did not install; see DEVELOPERS.md" >&2; exit 1; }
need python3 "install Python 3 (used to pick a free port)"

# Headless Chromium for the rendered-document test and the workbench walk-through over
# WebDriver (Debian packages; CJK fonts so Chinese documents render as a person would see them).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 \
   || ! fc-list 2>/dev/null | grep -qi "noto.*cjk"; then
  step "installing chromium, chromium-driver and fonts-noto-cjk (Debian packages)"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver fonts-noto-cjk >/dev/null
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver fonts-noto-cjk >/dev/null
  fi
fi
# --- dashboards (issue 7) -------------------------------------------------------------------
# Prometheus, promtool and node_exporter for the dashboards test (pipeline/cli/tests/it/dashboards.rs):
# it starts them on free loopback ports, evaluates every dashboard query and alert rule, and
# runs `promtool check rules` / `promtool test rules` on dashboards/alerts.yml.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1 \
  || ! command -v prometheus-node-exporter >/dev/null 2>&1; then
  step "installing prometheus and prometheus-node-exporter (Debian packages)"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      prometheus prometheus-node-exporter >/dev/null
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      prometheus prometheus-node-exporter >/dev/null
  fi
fi
# The Debian packages enable their own services; the test runs private instances on free
# ports, so the system ones are left as they are.
# --- end dashboards ---------------------------------------------------------------------------
# PostgreSQL 15 for the store's second backend (Debian postgresql-15): the store tests run once
# on SQLite files and once on databases of a throwaway server (scripts/pg_test_server.sh), and
# the three-host stream test needs it.
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  step "installing postgresql-15 (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 >/dev/null
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 >/dev/null
  fi
fi
# --- delivery, API and object-storage tests: aiosmtpd, schemathesis and moto (PyPI) in a venv --
# The delivery tests start `pipeline/cli/tests/support/smtp_sink.py` with the Python named by
# PHARMWATCH_TEST_PYTHON; the API test runs the venv's `schemathesis` against the workbench's
# OpenAPI document; the object-storage test starts `python -m moto.server` (an S3-compatible
# server) on a loopback port. All fail (never skip) without them. The venv is made once and reused.
venv="${PHARMWATCH_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pharmwatch/venv}"
if ! "$venv/bin/python" -c 'import aiosmtpd, moto.server, flask' >/dev/null 2>&1 \
   || [ ! -x "$venv/bin/schemathesis" ]; then
  step "making $venv with aiosmtpd (SMTP server), schemathesis (API property tests) and moto (S3 server)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" \
    || { echo "error: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet aiosmtpd schemathesis "moto[server]"
fi
export PHARMWATCH_TEST_PYTHON="$venv/bin/python"
step "aiosmtpd, schemathesis and moto in $venv (PHARMWATCH_TEST_PYTHON)"
# --- end of the delivery block -------------------------------------------------------------

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
"$TANSU" broker --listener-url "tcp://127.0.0.1:${port}" \
  --advertised-listener-url "tcp://127.0.0.1:${port}" \
  --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
tansu_pid=$!
pg_dir="/tmp/pharmwatch-pg-$$"
cleanup() {
  kill "$tansu_pid" 2>/dev/null || true
  wait "$tansu_pid" 2>/dev/null || true
  scripts/pg_test_server.sh stop "$pg_dir" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then break; fi
  if ! kill -0 "$tansu_pid" 2>/dev/null; then
    echo "error: tansu exited at start:" >&2; cat "$work/tansu.log" >&2; exit 1
  fi
  sleep 0.1
done
export PHARMWATCH_TEST_BROKER="127.0.0.1:${port}"
step "tansu broker on ${PHARMWATCH_TEST_BROKER} (pid ${tansu_pid})"
PHARMWATCH_TEST_POSTGRES=$(scripts/pg_test_server.sh start "$pg_dir")
export PHARMWATCH_TEST_POSTGRES
step "PostgreSQL 15 on ${PHARMWATCH_TEST_POSTGRES} (${pg_dir})"

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
step "crate graph (one direction, no import circle)"
python3 scripts/check_crate_graph.py
# The one build of the suite (Cargo.toml's `ci` profile); the guard below times its binary.
profile=ci
step "cargo test --workspace --profile $profile"
log="$work/test.log"
ws_failed=0
cargo test --workspace --profile "$profile" --no-fail-fast 2>&1 | tee "$log" || ws_failed=1
# The store's tests again, on PostgreSQL: the same test binaries (no new build), each store a
# fresh database of the throwaway server.
step "the store tests on PostgreSQL (PHARMWATCH_TEST_STORE=postgres)"
cargo test --workspace --profile "$profile" --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json, sys
crates = {"pharmwatch-core", "pharmwatch-casework", "pharmwatch-batch", "pharmwatch-stream",
          "pharmwatch-delivery", "pharmwatch-serve"}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"] \
       and m["package_id"].split("#")[1].split("@")[0] in crates:
        print(m["manifest_path"].rsplit("/", 1)[0] + "\t" + m["executable"])' >"$work/store-tests"
[ -s "$work/store-tests" ] || { echo "error: no store test binary found" >&2; exit 1; }
pg_failed=0
while IFS=$'\t' read -r dir bin; do
  echo "-- $(basename "$bin")"
  (cd "$dir" && CARGO_MANIFEST_DIR="$dir" PHARMWATCH_TEST_STORE=postgres "$bin") 2>&1 \
    | tee -a "$log" || pg_failed=1
done <"$work/store-tests"
# The nightly job's speed against DuckDB on the same files, as a ratio (a regression guard, not
# a timing): the `pharmwatch` binary the suite above was built with (profile `ci`: the release
# build's code generation, plus the fault points of the end-to-end tests, which are idle unless
# PHARMWATCH_FAULT names one, and overflow checks in the project's own crates), a small simulated
# province (600 enterprises x 60 days), the previous night once, then a real next night timed
# three times beside DuckDB running the same SQL; it fails when pharmwatch's median is more than
# 2x DuckDB's or the two find different hits. BENCHMARKS.md has the full-size figures, measured
# on release builds.
step "nightly regression guard: scripts/bench_nightly.sh --small --enterprises 600 --max-ratio 2"
guard_failed=0
guard_bin="${CARGO_TARGET_DIR:-target}/$profile/pharmwatch"
if [ ! -x "$guard_bin" ]; then
  echo "error: $guard_bin was not built by the test run above" >&2
  guard_failed=1
else
  scripts/bench_nightly.sh --small --enterprises 600 --max-ratio 2 --repeats 3 \
    --binary "$guard_bin" --lake "$work/bench-lake" --json "$work/bench-nightly.json" || guard_failed=1
fi
# The runner's closing lines, summed, so CI logs end with one count.
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: ${passed} passed, ${failed} failed"
step "disk: target/ $(du -sh target 2>/dev/null | cut -f1), $(df -h . | awk 'NR==2 {print $4}') free"
[ "${guard_failed}" -eq 0 ] || echo "error: the nightly regression guard failed (see above)" >&2
[ "${failed}" -eq 0 ] && [ "${ws_failed}" -eq 0 ] && [ "${pg_failed}" -eq 0 ] && [ "${guard_failed}" -eq 0 ]
