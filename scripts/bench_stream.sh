#!/usr/bin/env bash
# Stream benchmark: pharmwatch's consumer service beside a bare rdkafka consumer, on the same
# topics of one tansu broker (in-memory storage), in one run.
#
#   1. raw rate:   a bare rdkafka consumer (pipeline/stream/examples/kafka_bench.rs) reads every message
#   2. throughput: `pharmwatch stream` reads the same topics (its own group) end to end —
#                  decode, validate, lake files, window state, risk events, store commit
#   3. latency:    fresh topics, the service running, `pharmwatch produce --rate R`; the
#                  risk-events topic gives event → risk-event latency (Kafka timestamps)
#   with --province, step 2 runs a second time per run with a province's system of record:
#                  the store a fresh database of a throwaway PostgreSQL 15
#                  (scripts/pg_test_server.sh) and the lake a bucket of moto's S3 server on
#                  loopback (PHARMWATCH_TEST_PYTHON: a Python with moto[server], as the tests use)
#
# Usage: scripts/bench_stream.sh [--enterprises N] [--days D] [--rate R] [--runs K] [--no-build]
#                                [--province] [--keep DIR]
# --keep DIR copies each run's summary (JSON, with the seconds per phase) and log to DIR.
# Prints a table and the ratio; record the figures in BENCHMARKS.md with this command.
set -euo pipefail
cd "$(dirname "$0")/.."

enterprises=1000
stream_days=3
rate=20000
runs=3
build=1
province=0
keep=
while [ $# -gt 0 ]; do
  case "$1" in
    --enterprises) enterprises=$2; shift 2 ;;
    --days) stream_days=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --province) province=1; shift ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ]; then
  cargo build --release -p pharmwatch --bin pharmwatch
  cargo build --release -p pharmwatch-stream --example kafka_bench
fi
target=${CARGO_TARGET_DIR:-target}
pw="$target/release/pharmwatch"
kb="$target/release/examples/kafka_bench"
tansu=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
[ -x "$tansu" ] || { echo "tansu missing: cargo install tansu --version 0.6.0 --locked --features dynostore,libsql" >&2; exit 1; }

work=$(mktemp -d /tmp/pharmwatch-bench-stream.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
tansu_pid=$!
moto_pid=
stop_all() {
  kill $tansu_pid 2>/dev/null || true; wait $tansu_pid 2>/dev/null || true
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
  if [ "$province" = 1 ]; then scripts/pg_test_server.sh stop "/tmp/pharmwatch-bench-pg-$$" 2>/dev/null || true; fi
  if [ -n "$keep" ]; then mkdir -p "$keep"; cp "$work"/*.json "$work"/*.log "$keep"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap stop_all EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
export PHARMWATCH__STREAM__BROKERS="127.0.0.1:$port"

# 35 days of history before the streamed days (the simulator plants anomalies only after
# that), and the anomalies in the streamed days, so the service has signals to find.
total_days=$((35 + stream_days))
echo "== simulate $enterprises enterprises x $total_days days"
"$pw" simulate --enterprises "$enterprises" --days "$total_days" --seed 7 --out "$work/lake" \
  --anomaly-days "$stream_days" --quiet >/dev/null
last=$(python3 -c "import json;print(json.load(open('$work/lake/manifest.json'))['end'])")
first=$(python3 -c "import datetime as d;print(d.date.fromisoformat('$last')-d.timedelta(days=$stream_days-1))")
before=$(python3 -c "import datetime as d;print(d.date.fromisoformat('$first')-d.timedelta(days=1))")
"$pw" nightly --lake "$work/lake" --date "$before" --out "$work/baseline" --no-model >/dev/null

mkdir -p "$work/refs/reference"
cp "$work/lake/reference/"* "$work/refs/reference/"

config() { # $1 = run name; writes $work/$1.toml (its [stream] table)
  cat >"$work/$1.toml" <<EOF
[stream]
brokers = "127.0.0.1:$port"
group_id = "bench-$1"
topic_prefix = "$2."
dead_letter_topic = "$2.dead-letter"
risk_events_topic = "$2.risk-events"
lake = "$work/$1-lake"
store = "$work/$1-out/pharmwatch.db"
baseline = "$work/baseline"
metrics_listen = "127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
EOF
  rm -rf "$work/$1-lake" "$work/$1-out"
  mkdir -p "$work/$1-lake"
  cp -r "$work/refs/reference" "$work/$1-lake/"
}

topics() { # $1 = prefix
  echo "$1.production $1.sales $1.purchase $1.inventory $1.product-test $1.inspection"
}

if [ "$province" = 1 ]; then
  pg_admin=$(scripts/pg_test_server.sh start "/tmp/pharmwatch-bench-pg-$$")
  py=${PHARMWATCH_TEST_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/pharmwatch/venv/bin/python}
  s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$py" -m moto.server -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && break; sleep 0.1; done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
    AWS_ENDPOINT="http://127.0.0.1:$s3_port" AWS_ALLOW_HTTP=true
  "$py" - "$s3_port" "$work/refs/reference" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
s3.create_bucket(Bucket="lake")
for f in os.listdir(sys.argv[2]):
    s3.upload_file(os.path.join(sys.argv[2], f), "lake", f"reference/{f}")
PY
  echo "== PostgreSQL 15 on $pg_admin, S3 (moto) on 127.0.0.1:$s3_port"
fi

# province_config NAME: $work/NAME.toml with the store a new PostgreSQL database and the lake
# the bucket's prefix NAME (the reference tables copied in the bucket).
province_config() {
  config "$1" bench
  psql "$pg_admin" -qc "CREATE DATABASE \"$1\" TEMPLATE template0" >/dev/null
  local db="${pg_admin%/postgres}/$1"
  sed -i "s|^lake = .*|lake = \"s3://lake/$1\"|; s|^store = .*|store = \"$db\"|" "$work/$1.toml"
  "$py" - "$s3_port" "$1" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
for o in s3.list_objects_v2(Bucket="lake", Prefix="reference/")["Contents"]:
    s3.copy_object(Bucket="lake", Key=f"{sys.argv[2]}/{o['Key']}",
                   CopySource={"Bucket": "lake", "Key": o["Key"]})
PY
}

config setup bench
"$pw" topics --config "$work/setup.toml" --partitions 4 >/dev/null
produced=$("$pw" produce --config "$work/setup.toml" --lake "$work/lake" --from "$first" --to "$last" | tail -1)
echo "== $produced"
n=$(echo "$produced" | awk '{print $2}')

results="$work/results.tsv"
: >"$results"
for r in $(seq 1 "$runs"); do
  raw=$("$kb" raw "127.0.0.1:$port" "raw-$r" "$n" $(topics bench))
  config "pw-$r" bench
  sed -i "s/group_id = .*/group_id = \"pw-$r\"/" "$work/pw-$r.toml"
  /usr/bin/time -f "%M" -o "$work/pw-$r.rss" "$pw" stream --config "$work/pw-$r.toml" --exit-when-idle 2 \
    >"$work/pw-$r.json" 2>"$work/pw-$r.log"
  pg_json=none
  if [ "$province" = 1 ]; then
    province_config "pg-$r"
    sed -i "s/group_id = .*/group_id = \"pg-$r\"/" "$work/pg-$r.toml"
    "$pw" stream --config "$work/pg-$r.toml" --exit-when-idle 2 >"$work/pg-$r.json" 2>"$work/pg-$r.log"
    pg_json="$work/pg-$r.json"
  fi
  python3 - "$raw" "$work/pw-$r.json" "$work/pw-$r.rss" "$pg_json" >>"$results" <<'EOF'
import json, sys
raw = json.loads(sys.argv[1]); pw = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
rss = int(open(sys.argv[3]).read().strip().splitlines()[-1]) / 1024
rate = pw["consumed"] / pw["active_seconds"]
pg = "0\t0"
if sys.argv[4] != "none":
    p = json.loads(open(sys.argv[4]).read().strip().splitlines()[-1])
    assert p["consumed"] == pw["consumed"] and p["risk_events"] == pw["risk_events"], (p, pw)
    pg = f"{p['consumed'] / p['active_seconds']:.0f}\t{p['active_seconds']:.1f}"
print(f"{raw['rate']:.0f}\t{rate:.0f}\t{pw['consumed']}\t{pw['risk_events']}\t{rss:.0f}\t{pg}")
EOF
  tail -1 "$results" | awk -F'\t' -v r="$r" '{printf "run %d: bare consumer %s msg/s, pharmwatch %s records/s end to end (%s records, %s risk events, %s MB max RSS)", r, $1, $2, $3, $4, $5; if ($6 > 0) printf "; on PostgreSQL + S3 %s records/s", $6; printf "\n"}'
done

echo "== latency at $rate records/s"
config lat lat
"$pw" topics --config "$work/lat.toml" --partitions 4 >/dev/null
"$pw" stream --config "$work/lat.toml" >"$work/lat.json" 2>"$work/lat.log" &
svc=$!
metrics=$(sed -n 's/^metrics_listen = "\(.*\)"/\1/p' "$work/lat.toml")
# wait_for assigned|consumed: polls the service's /healthz or /metrics until it holds its
# partitions, or until it has consumed every produced record.
wait_for() {
  python3 - "$metrics" "$1" "$n" <<'PY'
import json, sys, time, urllib.request
addr, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 300
while time.time() < deadline:
    try:
        if what == "assigned":
            h = json.load(urllib.request.urlopen(f"http://{addr}/healthz", timeout=2))
            if h.get("assigned_partitions"):
                sys.exit(0)
        else:
            text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=2).read().decode()
            done = sum(float(l.split()[-1]) for l in text.splitlines()
                       if l.startswith("pharmwatch_stream_consumed_total"))
            if done >= n:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(f"the stream service did not get {what} within 300 s; see its log")
PY
}
wait_for assigned   # the service holds its partitions (and has seeded the baseline)
sleep 6             # and is past its start-up hold for the first watermarks
"$pw" produce --config "$work/lat.toml" --lake "$work/lake" --from "$first" --to "$last" --rate "$rate" | tail -1
wait_for consumed   # every produced record is through
sleep 1
kill -TERM "$svc"; wait "$svc" || true
lat=$("$kb" latency "127.0.0.1:$port" lat.risk-events)
echo "latency: $lat"

python3 - "$results" "$lat" <<'EOF'
import json, statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().strip().splitlines()]
raw = statistics.median(float(r[0]) for r in rows)
pw = statistics.median(float(r[1]) for r in rows)
lat = json.loads(sys.argv[2])
print()
print(f"median of {len(rows)} runs: bare rdkafka consumer {raw:,.0f} msg/s, pharmwatch stream {pw:,.0f} records/s")
print(f"ratio pharmwatch / bare consumer: {pw / raw:.2f}x  (target >= 0.8x)")
pg = [float(r[5]) for r in rows if float(r[5]) > 0]
if pg:
    pgm = statistics.median(pg)
    print(f"pharmwatch stream on PostgreSQL + S3: {pgm:,.0f} records/s; ratio to SQLite + folder: {pgm / pw:.2f}x (target >= 0.7x)")
print(f"event -> risk event latency at the fixed rate: p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms over {lat['timed']} events (target p99 < 1000 ms)")
EOF
