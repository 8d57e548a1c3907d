#!/usr/bin/env bash
# The nightly job over a lake on object storage vs the same lake in a folder, in one run.
#
#   scripts/bench_object_lake.sh                                  # the benchmark lake, 3 runs each
#   scripts/bench_object_lake.sh --lake DIR --repeats 5 --binary target/release/pharmwatch
#
# Starts moto's S3 server (PyPI `moto[server]`, from the tests' venv that scripts/test.sh makes)
# on a free loopback port, uploads the lake (default /tmp/pharmwatch-bench-lake, made by
# scripts/bench_nightly.sh) to a bucket, then times `pharmwatch nightly --no-model` as a whole
# process over the folder and over `s3://bench/lake`, alternating, and prints the medians, the
# ratio and whether both risk lists are identical. It never builds pharmwatch: build it first
# (cargo build --release -p pharmwatch). moto keeps objects in memory: this measures the object
# store client and the listing, not a real storage cluster's disks.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
lake=/tmp/pharmwatch-bench-lake
repeats=3
binary="$root/target/release/pharmwatch"
venv="${PHARMWATCH_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pharmwatch/venv}"
while [ $# -gt 0 ]; do
    case "$1" in
        --lake) lake="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
py="$venv/bin/python"
"$py" -c 'import moto.server, boto3' 2>/dev/null \
    || { echo "error: $py has no moto server: run scripts/test.sh once, or $venv/bin/pip install 'moto[server]'" >&2; exit 1; }
[ -x "$binary" ] || { echo "error: $binary missing: cargo build --release -p pharmwatch" >&2; exit 1; }
[ -f "$lake/manifest.json" ] || { echo "error: no lake at $lake: run scripts/bench_nightly.sh first" >&2; exit 1; }
day=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['end'])" "$lake/manifest.json")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
"$py" -m moto.server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true; wait $moto 2>/dev/null || true; rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
    AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
"$py" - "$lake" "$port" <<'EOF'
import boto3, os, sys
lake, port = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
s3.create_bucket(Bucket="bench")
n = 0
for d, _, files in os.walk(lake):
    for f in files:
        if f.endswith(".parquet") or f == "manifest.json":
            p = os.path.join(d, f)
            s3.upload_file(p, "bench", "lake/" + os.path.relpath(p, lake))
            n += 1
print(f"uploaded {n} objects of {lake} to s3://bench/lake", file=sys.stderr)
EOF

time_run() {  # $1 lake, $2 out: prints the wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$binary" nightly --lake "$1" --date "$day" --no-model --out "$2" >"$2.log" 2>&1 \
        || { cat "$2.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.2f}')"
}
folder=(); bucket=()
for i in $(seq 1 "$repeats"); do
    folder+=("$(time_run "$lake" "$work/out-folder-$i")")
    bucket+=("$(time_run s3://bench/lake "$work/out-bucket-$i")")
    echo "run $i: folder ${folder[-1]} s, bucket ${bucket[-1]} s" >&2
done
same=no
cmp -s "$work/out-folder-1/risk_list.csv" "$work/out-bucket-1/risk_list.csv" && same=yes
python3 - "$day" "$same" "${folder[*]}" "${bucket[*]}" <<'EOF'
import statistics, sys
day, same, f, b = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
mf, mb = statistics.median(map(float, f)), statistics.median(map(float, b))
print(f"nightly --date {day} --no-model, median of {len(f)}: folder {mf:.2f} s, "
      f"s3 (moto on loopback) {mb:.2f} s, ratio {mb / mf:.2f}x; identical risk lists: {same}")
EOF
