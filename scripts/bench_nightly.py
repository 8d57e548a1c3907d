#!/usr/bin/env python3
"""Benchmark the nightly indicator SQL: pharmwatch (DataFusion) vs DuckDB on the same Parquet lake.

What it does, in one run:

1. Simulates a lake with `pharmwatch simulate` (or reuses the one at --lake when its
   manifest.json matches the requested enterprises / days / seed; --fresh forces a new one),
   and reports the simulator's throughput (total_records / wall seconds).
2. Bench date = the lake's last day (manifest "end").
3. pharmwatch: times a real next night, `pharmwatch nightly --lake LAKE --date D --out OUT`, as
   a whole process (start to exit: Parquet in, indicator SQL, scoring, every output written),
   where OUT holds what the night of D - 1 left (run once, untimed, then copied afresh for each
   timed run): the days the previous night stored are read back, as in production. Rules only
   by default (`--no-model`, like for like with DuckDB); `--model` times the night with the
   anomaly model. Peak RSS of each process is recorded (wait4).
4. DuckDB: times connect + CREATE VIEW over exactly the Parquet files pharmwatch reads
   (event kinds: partitions [D - 60 days, D], product_test: every partition up to D;
   products / batches / enterprises from LAKE/reference) + the 7 rendered indicator queries, all results
   fetched.
5. Repeats both --repeats times with alternating order, reports the median wall time and peak
   RSS of each and the ratio pharmwatch / duckdb (DuckDB runs in a child process so that its
   memory is measured alone). `--max-ratio R` makes the run fail (exit 3) when the ratio of
   medians exceeds R: the regression guard `scripts/test.sh` runs with `--small`.
6. Checks that both engines found the same number of hits per indicator (pharmwatch:
   items of OUT/risk_list.json; DuckDB: rows per `indicator` over the 7 queries). A mismatch
   means the comparison is not apples to apples: it is printed loudly and the exit code is 2.
7. `--baseline BINARY` (an earlier build) times that binary's next night too, in the same loop,
   from a previous night it computed itself (a build whose queries differ keys the days it
   stores differently, and would recompute them all from the other build's night), and reports
   the paired difference (each repeat's pharmwatch run minus its baseline run: the median, and
   in how many repeats pharmwatch was faster). On a shared machine whose speed drifts by ±20 %
   within minutes, that is how a change of a few per cent shows; its hit counts must equal
   pharmwatch's.
8. `--backfill N` then times a backfill of the N days ending with D (`pharmwatch nightly --from
   D - N + 1 --to D`, same mode) from the output of the night of D - N (run once, untimed),
   --repeats times, and reports its median against the median next night above: the cost of
   catching up after an outage, in nights.

Run it through scripts/bench_nightly.sh (creates the venv with DuckDB). Modes:
  default ("full"): 2000 enterprises x 60 days; asserts manifest total_records >= 10,000,000.
  --small:          300 enterprises x 60 days, no record-count assertion (functional check).

Nothing here builds pharmwatch: the binary must exist (default target/release/pharmwatch).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDICATORS_RS = ROOT / "pipeline" / "core" / "src" / "indicators.rs"
SQL_DIR = ROOT / "pipeline" / "sql"

EVENT_TABLES = ["sales", "purchase", "production", "inventory", "product_test"]
REFERENCE_TABLES = ["products", "batches", "enterprises"]

FULL = {"enterprises": 2000, "days": 60, "min_records": 10_000_000}
SMALL = {"enterprises": 300, "days": 60, "min_records": 0}

# Fallbacks, used only if pipeline/core/src/indicators.rs cannot be parsed. Source of truth:
# `impl Default for Thresholds` and `LOOKBACK_DAYS` in pipeline/core/src/indicators.rs.
FALLBACK_THRESHOLDS = {
    "mismatch_min": 3.0,
    "mismatch_share": 0.02,
    "spike_ratio": 3.0,
    "spike_z": 6.0,
    "spike_abs": 3.0,
    "special_ratio": 2.5,
    "special_z": 4.0,
    "special_abs": 3.0,
    "min_active_days": 20,
    "lumpy_max_ratio": 2.0,
    "lumpy_mean_ratio": 4.0,
    "price_ratio": 0.5,
    "stop_days": 3,
    "stop_min_active": 20,
    "trace_lookback_days": 60,
}
FALLBACK_LOOKBACK_DAYS = 60
FALLBACK_QUERIES = [
    "indicators/inventory.sql",
    "indicators/retail_spike.sql",
    "indicators/order_spike.sql",
    "indicators/batch_quality.sql",
    "indicators/trace_duplicate.sql",
    "indicators/price.sql",
    "indicators/reporting.sql",
]

# Textual rewrites applied to the rendered SQL before DuckDB runs it: (file, old, new, why).
# Each `old` must occur in the file, so a changed query is noticed instead of silently skipped.
# None are needed at present: DuckDB accepts the queries as written (DATE - INTERVAL yields a
# TIMESTAMP in DuckDB but compares / joins with DATE columns the same way; RANGE frames with
# INTERVAL offsets over DATE, median, concat, greatest all work unchanged).
DUCKDB_REWRITES: list[tuple[str, str, str, str]] = []


def log(msg: str = "") -> None:
    print(msg, flush=True)


def die(msg: str, code: int = 1) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# Thresholds and queries, read from the Rust source so the two engines get the same SQL.
# ---------------------------------------------------------------------------------------------


def _block_after(text: str, start: int) -> str:
    """Text inside the brace block that opens at the first '{' at or after `start`."""
    open_at = text.index("{", start)
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    raise ValueError("unbalanced braces")


def _strip_line_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def parse_indicators_rs(path: Path) -> dict:
    """Thresholds (name -> int|float), LOOKBACK_DAYS, query order and indicator names.

    Field types come from the `pub struct Thresholds` declaration (f64 vs an integer type), the
    values from `impl Default for Thresholds`. Raises ValueError when the shape is not found.
    """
    text = path.read_text(encoding="utf-8")
    struct_at = text.find("pub struct Thresholds")
    impl_at = text.find("impl Default for Thresholds")
    if struct_at < 0 or impl_at < 0:
        raise ValueError("Thresholds struct or its Default impl not found")
    struct_body = _strip_line_comments(_block_after(text, struct_at))
    types = dict(re.findall(r"pub\s+(\w+)\s*:\s*(\w+)\s*,", struct_body))
    impl_body = _strip_line_comments(_block_after(text, impl_at))
    self_at = impl_body.find("Self {")
    if self_at < 0:
        raise ValueError("`Self {` not found in the Default impl")
    values = dict(re.findall(r"(\w+)\s*:\s*([-+0-9.eE_]+)\s*,?", _block_after(impl_body, self_at)))
    if not types or set(types) != set(values):
        raise ValueError(f"fields {sorted(types)} do not match defaults {sorted(values)}")
    thresholds: dict[str, int | float] = {}
    for name, ty in types.items():
        raw = values[name].replace("_", "")
        if ty in ("f64", "f32"):
            thresholds[name] = float(raw)
        elif re.fullmatch(r"[ui](8|16|32|64|128|size)", ty):
            thresholds[name] = int(raw)
        else:
            raise ValueError(f"unexpected type {ty} of threshold {name}")
    m = re.search(r"pub const LOOKBACK_DAYS\s*:\s*\w+\s*=\s*(\d+)\s*;", text)
    if not m:
        raise ValueError("LOOKBACK_DAYS not found")
    lookback = int(m.group(1))
    # Paths under pipeline/sql/ as indicators.rs includes them (`../../sql/indicators/X.sql`).
    queries = re.findall(r'include_str!\("(?:\.\./)+sql/((?:indicators/)?[\w.]+\.sql)"\)', text)
    # Feature tables (sql/features/NAME.sql), built with CREATE TABLE NAME AS … before the queries.
    features = re.findall(r'include_str!\("(?:\.\./)+sql/features/([\w]+)\.sql"\)', text)
    ind_m = re.search(r"pub const INDICATORS\s*:[^=]*=\s*&\[(.*?)\];", text, re.S)
    indicators = re.findall(r'"(\w+)"', ind_m.group(1)) if ind_m else []
    return {"thresholds": thresholds, "lookback_days": lookback, "queries": queries,
            "features": features, "indicators": indicators}


def load_rules(args) -> dict:
    try:
        rules = parse_indicators_rs(INDICATORS_RS)
        rules["source"] = str(INDICATORS_RS)
    except (OSError, ValueError) as e:
        log(f"warning: cannot parse {INDICATORS_RS} ({e}); using the hard-coded defaults in this script")
        rules = {
            "thresholds": dict(FALLBACK_THRESHOLDS),
            "lookback_days": FALLBACK_LOOKBACK_DAYS,
            "queries": [],
            "features": [],
            "indicators": [],
            "source": "hard-coded fallback (see pipeline/core/src/indicators.rs)",
        }
    if not rules["queries"]:
        rules["queries"] = list(FALLBACK_QUERIES)
    sql_dir = Path(args.sql_dir)
    rules["sql"] = {}
    for name in rules["queries"]:
        p = sql_dir / name
        if not p.exists():
            die(f"query file {p} is missing")
        rules["sql"][name] = p.read_text(encoding="utf-8")
    rules["feature_sql"] = {}
    for name in rules.get("features", []):
        p = sql_dir / "features" / f"{name}.sql"
        if not p.exists():
            die(f"feature file {p} is missing")
        rules["feature_sql"][name] = p.read_text(encoding="utf-8")
    extra = sorted(
        str(p.relative_to(sql_dir))
        for pattern in ("*.sql", "indicators/*.sql")
        for p in sql_dir.glob(pattern)
        if str(p.relative_to(sql_dir)) not in rules["sql"]
    )
    if extra:
        log(f"warning: {sql_dir} has SQL files pharmwatch does not run: {', '.join(extra)} (ignored)")
    return rules


def rust_float_literal(x: float) -> str:
    # pharmwatch renders floats with Rust's `{:?}`: always a decimal point (3.0, 0.02). Python's
    # repr gives the same text for these values.
    s = repr(float(x))
    return s if ("." in s or "e" in s or "inf" in s or "nan" in s) else s + ".0"


def threshold_tokens(rules: dict, double_literals: bool) -> dict[str, str]:
    """${name} -> text, as pharmwatch's `Thresholds::tokens` renders them.

    double_literals (DuckDB): a float threshold becomes `CAST(x AS DOUBLE)`. In DataFusion a
    decimal literal such as 0.02 is a Float64; in DuckDB it is a DECIMAL, and e.g.
    `0.02 * (opening + inflow)` (an integer sum) would then be computed exactly in decimal
    rather than in floating point, which can flip a hit exactly at a threshold. The cast keeps
    the arithmetic in float, as in pharmwatch.
    """
    out = {}
    for k, v in rules["thresholds"].items():
        if k == "trace_lookback_days":
            v = min(int(v), int(rules["lookback_days"]))  # as Thresholds::tokens does
        if isinstance(v, float):
            lit = rust_float_literal(v)
            out[k] = f"CAST({lit} AS DOUBLE)" if double_literals else lit
        else:
            out[k] = str(int(v))
    return out


def render(sql: str, day_from: dt.date, day_to: dt.date, tokens: dict[str, str]) -> str:
    out = sql.replace("${from}", f"DATE '{day_from.isoformat()}'").replace("${to}", f"DATE '{day_to.isoformat()}'")
    for k, v in tokens.items():
        out = out.replace("${" + k + "}", v)
    left = re.search(r"\$\{[^}]*\}", out)
    if left:
        die(f"unknown SQL token {left.group(0)}")
    return out


def duckdb_queries(rules: dict, day: dt.date) -> tuple[list[tuple[str, str]], list[dict]]:
    tokens = threshold_tokens(rules, double_literals=True)
    queries = []
    applied = []
    # Feature tables first, as pharmwatch builds them (CREATE TABLE name AS …).
    for name, sql in rules.get("feature_sql", {}).items():
        queries.append((f"features/{name}.sql", f"CREATE TEMP TABLE {name} AS " + render(sql, day, day, tokens)))
    for name in rules["queries"]:
        text = render(rules["sql"][name], day, day, tokens)
        for file, old, new, why in DUCKDB_REWRITES:
            if file != name:
                continue
            if old not in text:
                die(f"DuckDB rewrite for {name} no longer applies (text not found: {old!r}); update the script")
            text = text.replace(old, new)
            applied.append({"file": name, "old": old, "new": new, "why": why})
        queries.append((name, text))
    return queries, applied


# ---------------------------------------------------------------------------------------------
# Lake
# ---------------------------------------------------------------------------------------------


def read_manifest(lake: Path) -> dict | None:
    try:
        return json.loads((lake / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def manifest_days(m: dict) -> int:
    return (dt.date.fromisoformat(m["end"]) - dt.date.fromisoformat(m["start"])).days + 1


def manifest_records(m: dict) -> dict[str, int]:
    r = m.get("records", {})
    if isinstance(r, dict):
        return {k: int(v) for k, v in r.items()}
    return {k: int(v) for k, v in r}  # serialised as [[kind, n], ...]


def manifest_matches(m: dict | None, enterprises: int, days: int, seed: int) -> bool:
    if not m:
        return False
    try:
        return int(m["enterprises"]) == enterprises and int(m["seed"]) == seed and manifest_days(m) == days
    except (KeyError, ValueError, TypeError):
        return False


SIM_SIDECAR = "bench_simulate.json"  # written into the lake by this script; pharmwatch ignores it


def simulate(binary: Path, lake: Path, enterprises: int, days: int, seed: int) -> dict:
    if lake.exists():
        if any(lake.iterdir()) and not (lake / "manifest.json").exists():
            die(f"{lake} exists, is not empty and has no manifest.json: not a lake, refusing to delete it")
        shutil.rmtree(lake)
    cmd = [str(binary), "simulate", "--enterprises", str(enterprises), "--days", str(days),
           "--seed", str(seed), "--out", str(lake), "--quiet"]
    log(f"$ {' '.join(cmd)}")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        die(f"simulate failed (exit {p.returncode})")
    for line in p.stdout.splitlines():
        log(f"  | {line}")
    m = read_manifest(lake)
    if not m:
        die(f"simulate did not write {lake / 'manifest.json'}")
    info = {
        "binary": str(binary),
        "enterprises": enterprises,
        "days": days,
        "seed": seed,
        "total_records": int(m["total_records"]),
        "wall_seconds": wall,
        "records_per_second": int(m["total_records"]) / wall,
        "when": dt.datetime.now().isoformat(timespec="seconds"),
    }
    (lake / SIM_SIDECAR).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def partitions(lake: Path, kind: str, since: dt.date | None, until: dt.date) -> list[Path]:
    """Mirror of lake::partitions + lake::day_files: every Parquet file of the day partitions."""
    d = lake / kind
    out = []
    if not d.is_dir():
        return out
    for entry in d.iterdir():
        if not entry.name.startswith("date="):
            continue
        try:
            day = dt.date.fromisoformat(entry.name[len("date="):])
        except ValueError:
            continue
        if (since is None or day >= since) and day <= until:
            for f in sorted(entry.glob("*.parquet")):
                if not f.name.startswith("."):
                    out.append((day, f))
    return [f for _, f in sorted(out)]


def table_files(lake: Path, day: dt.date, lookback_days: int) -> dict[str, list[Path]]:
    since = day - dt.timedelta(days=lookback_days)
    files = {k: partitions(lake, k, None if k == "product_test" else since, day) for k in EVENT_TABLES}
    for r in REFERENCE_TABLES:
        p = lake / "reference" / f"{r}.parquet"
        if not p.exists():
            die(f"reference table {p} is missing")
        files[r] = [p]
    return files


# ---------------------------------------------------------------------------------------------
# The two engines
# ---------------------------------------------------------------------------------------------


def sql_str(p: Path) -> str:
    return "'" + str(p.resolve()).replace("'", "''") + "'"


def run_duckdb(files: dict[str, list[Path]], any_file: dict[str, Path], day: dt.date,
               queries: list[tuple[str, str]], threads: int | None) -> dict:
    """run_duckdb_here in a forked child, so that its peak RSS is its own (wait4)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            res = run_duckdb_here(files, any_file, day, queries, threads)
            data = json.dumps(res).encode()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            data = json.dumps({"error": repr(e)}).encode()
            code = 1
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status, usage = os.wait4(pid, 0)
    res = json.loads(data or b"{}")
    if os.waitstatus_to_exitcode(status) != 0 or "error" in res:
        die(f"DuckDB run failed: {res.get('error', 'exit status ' + str(status))}")
    res["rss"] = usage.ru_maxrss * 1024
    return res


def run_duckdb_here(files: dict[str, list[Path]], any_file: dict[str, Path], day: dt.date,
                    queries: list[tuple[str, str]], threads: int | None) -> dict:
    import duckdb

    t0 = time.perf_counter()
    config = {"threads": threads} if threads else {}
    con = duckdb.connect(":memory:", config=config)
    for name, fs in files.items():
        if fs:
            src = "read_parquet([" + ", ".join(sql_str(f) for f in fs) + "])"
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {src}")
        else:
            # No partition in range (pharmwatch registers an empty table of the lake schema):
            # an empty view with the schema of any file of that kind.
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({sql_str(any_file[name])}) LIMIT 0")
    con.execute(f"CREATE TABLE run_dates AS SELECT DATE '{day.isoformat()}' AS run_date")
    t_setup = time.perf_counter() - t0
    per_query = {}
    counts: dict[str, int] = {}
    rows_total = 0
    for name, sql in queries:
        q0 = time.perf_counter()
        if name.startswith("features/"):
            con.execute(sql)
            per_query[name] = time.perf_counter() - q0
            continue
        cur = con.execute(sql)
        rows = cur.fetchall()
        cols = [d[0] for d in cur.description]
        per_query[name] = time.perf_counter() - q0
        if "indicator" not in cols:
            die(f"DuckDB result of {name} has no indicator column: {cols}")
        ix = cols.index("indicator")
        for r in rows:
            counts[r[ix]] = counts.get(r[ix], 0) + 1
        rows_total += len(rows)
    wall = time.perf_counter() - t0
    con.close()
    return {"wall": wall, "setup": t_setup, "per_query": per_query, "counts": counts, "rows": rows_total}


TIME_RE = re.compile(r"^\s*time:\s*([0-9.]+)\s*s\b", re.M)


def nightly_cmd(binary: Path, lake: Path, day: dt.date, out: Path, model: bool,
                first: dt.date | None = None) -> list[str]:
    """The night of `day`, or with `first` the backfill of the days `first` to `day`."""
    days = ["--date", day.isoformat()] if first is None else ["--from", first.isoformat(), "--to", day.isoformat()]
    cmd = [str(binary), "nightly", "--lake", str(lake), *days, "--out", str(out)]
    return cmd if model else cmd + ["--no-model"]


def run_pharmwatch(binary: Path, lake: Path, day: dt.date, out: Path, prev: Path, model: bool,
                   cmd: list[str] | None = None) -> dict:
    """One timed next night (or `cmd`, a backfill): OUT starts as the previous night `prev` left
    it (copied, untimed)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(prev, out, symlinks=True)
    cmd = cmd or nightly_cmd(binary, lake, day, out, model)
    wall, rss, code, stdout, stderr = run_measured(cmd)
    if code != 0:
        sys.stderr.write(stdout + stderr)
        die(f"pharmwatch nightly failed (exit {code}): {' '.join(cmd)}")
    p = subprocess.CompletedProcess(cmd, code, stdout, stderr)
    m = TIME_RE.search(p.stdout)
    risk = json.loads((out / "risk_list.json").read_text(encoding="utf-8"))
    counts: dict[str, int] = {}
    for row in risk:
        for item in row.get("items", []):
            if item["indicator"] == "model_anomaly":
                continue  # the model's verdicts: DuckDB runs the rules' SQL only
            counts[item["indicator"]] = counts.get(item["indicator"], 0) + 1
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    return {
        "wall": wall,
        "rss": rss,
        "reported": float(m.group(1)) if m else None,
        "counts": counts,
        "risk_rows": len(risk),
        "days": run.get("days"),
        "stdout": p.stdout,
        "cmd": cmd,
    }


def run_measured(cmd: list[str]) -> tuple[float, int, int, str, str]:
    """Runs cmd as a child; (wall seconds, its peak RSS in bytes, exit code, stdout, stderr)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Drain the pipes from threads, then reap the child with wait4 for its own rusage.
    chunks: dict[str, bytes] = {}
    def drain(name, stream):
        chunks[name] = stream.read()
    threads = [threading.Thread(target=drain, args=(n, st)) for n, st in (("out", p.stdout), ("err", p.stderr))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    for t in threads:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return (wall, usage.ru_maxrss * 1024, p.returncode,
            chunks.get("out", b"").decode(errors="replace"), chunks.get("err", b"").decode(errors="replace"))


def prepare_previous_night(binary: Path, lake: Path, day: dt.date, prev: Path, model: bool,
                           before: int = 1) -> float:
    """The night of day - `before` into a fresh `prev` (untimed for the comparison); its wall time."""
    if prev.exists():
        shutil.rmtree(prev)
    cmd = nightly_cmd(binary, lake, day - dt.timedelta(days=before), prev, model)
    log(f"$ {' '.join(cmd)}   # the previous night, once")
    wall, rss, code, stdout, stderr = run_measured(cmd)
    if code != 0:
        sys.stderr.write(stdout + stderr)
        die(f"the previous night failed (exit {code})")
    log(f"  previous night (from scratch): {wall:.1f} s, peak RSS {rss / 2**30:.2f} GiB")
    return wall


def fmt_runs(runs: list[dict]) -> str:
    return ", ".join(f"{r['wall']:.3f}" for r in runs)


def binary_version(binary: Path) -> str:
    try:
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def run_backfill(args, binary: Path, lake: Path, day: dt.date, out: Path, night_median: float) -> dict:
    """Times `--backfill N` (see the module doc) and prints it against the next night's median."""
    n = args.backfill
    first = day - dt.timedelta(days=n - 1)
    prev = Path(str(out) + f"-before-backfill-{n}")
    log("")
    prepare_previous_night(binary, lake, day, prev, args.model, before=n)
    cmd = nightly_cmd(binary, lake, day, out, args.model, first=first)
    log(f"$ {' '.join(cmd)}   # timed {args.repeats}x, each from a copy of the night of {first - dt.timedelta(days=1)}")
    runs = []
    for i in range(args.repeats):
        r = run_pharmwatch(binary, lake, day, out, prev, args.model, cmd=cmd)
        runs.append(r)
        log(f"  backfill {i + 1}/{args.repeats} {r['wall']:8.3f} s wall, peak RSS {r['rss'] / 2**30:.2f} GiB, "
            f"{r['risk_rows']} risk rows, days {r['days']}")
    med = statistics.median(r["wall"] for r in runs)
    ratio = med / night_median if night_median > 0 else float("inf")
    log(f"  {n}-day backfill{' with the model' if args.model else ', rules only'}: median {med:.3f} s "
        f"({fmt_runs(runs)}), {ratio:.2f}x the next night's {night_median:.3f} s; "
        f"peak RSS {max(r['rss'] for r in runs) / 2**30:.2f} GiB")
    return {
        "days": n, "from": first.isoformat(), "to": day.isoformat(), "command": cmd,
        "wall_seconds": [r["wall"] for r in runs], "median_seconds": med,
        "peak_rss_bytes": [r["rss"] for r in runs], "ratio_over_next_night": ratio,
        "stored_days": runs[-1]["days"],
    }


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="quick functional check: 300 enterprises x 60 days, no 10M assertion")
    ap.add_argument("--enterprises", type=int, help="enterprises to simulate (default 2000; 300 with --small)")
    ap.add_argument("--days", type=int, help="days to simulate (default 60)")
    ap.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    ap.add_argument("--min-records", type=int,
                    help="fail unless the lake has at least this many event records (default 10,000,000; 0 with --small)")
    ap.add_argument("--lake", help="lake directory (default /tmp/pharmwatch-bench-lake; -small suffix with --small)")
    ap.add_argument("--fresh", action="store_true", help="re-simulate even if the lake matches")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "pharmwatch"),
                    help="pharmwatch binary (default target/release/pharmwatch; never built by this script)")
    ap.add_argument("--out", help="pharmwatch nightly output directory (default LAKE-nightly)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per engine (default 3)")
    ap.add_argument("--model", action="store_true",
                    help="time pharmwatch's night with the anomaly model (default: rules only, --no-model)")
    ap.add_argument("--max-ratio", type=float,
                    help="fail (exit 3) when pharmwatch's median is more than this many times DuckDB's")
    ap.add_argument("--baseline", help="an earlier pharmwatch binary, timed alternately with --binary "
                    "from the same previous night: prints the paired difference")
    ap.add_argument("--backfill", type=int, metavar="N",
                    help="also time a backfill of the N days ending with the bench date, against the next night")
    ap.add_argument("--duckdb-threads", type=int, help="DuckDB threads (default: DuckDB's default, all cores)")
    ap.add_argument("--sql-dir", default=str(SQL_DIR), help="SQL directory (default pipeline/sql)")
    ap.add_argument("--json", help="result JSON path (default /tmp/pharmwatch-bench-{full,small}.json)")
    args = ap.parse_args()

    mode = "small" if args.small else "full"
    preset = SMALL if args.small else FULL
    enterprises = args.enterprises or preset["enterprises"]
    days = args.days or preset["days"]
    min_records = preset["min_records"] if args.min_records is None else args.min_records
    lake = Path(args.lake or ("/tmp/pharmwatch-bench-lake" + ("-small" if args.small else ""))).resolve()
    out = Path(args.out).resolve() if args.out else Path(str(lake) + "-nightly")
    json_path = Path(args.json or f"/tmp/pharmwatch-bench-{mode}.json")
    binary = Path(args.binary).resolve()
    if args.repeats < 1:
        die("--repeats must be at least 1")
    if args.backfill is not None and args.backfill < 2:
        die("--backfill must be at least 2 days (one day is a next night)")
    if not binary.is_file() or not os.access(binary, os.X_OK):
        die(f"pharmwatch binary {binary} not found (build it first, e.g. cargo build --release -p pharmwatch)")
    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline and (not baseline.is_file() or not os.access(baseline, os.X_OK)):
        die(f"baseline binary {baseline} not found or not executable")
    try:
        import duckdb
    except ImportError:
        die("the duckdb Python package is missing: run through scripts/bench_nightly.sh, or pip install -r scripts/requirements-bench.txt")

    rules = load_rules(args)
    # pharmwatch compiles the SQL in (include_str!); DuckDB gets the files as they are now.
    newer = [p.name for p in [INDICATORS_RS, *(Path(args.sql_dir) / n for n in rules["queries"])]
             if p.exists() and p.stat().st_mtime > binary.stat().st_mtime]
    if newer:
        log(f"warning: {', '.join(newer)} changed after {binary} was built; the binary may run other SQL "
            "than DuckDB gets (rebuild it if the hit counts differ)")
    version = binary_version(binary)
    log(f"pharmwatch: {binary} ({version}); duckdb {duckdb.__version__}; python {platform.python_version()}; "
        f"{os.cpu_count()} cpus")
    log(f"mode {mode}: {enterprises} enterprises x {days} days, seed {args.seed}; lake {lake}")

    # 1. The lake.
    manifest = read_manifest(lake)
    if not args.fresh and manifest_matches(manifest, enterprises, days, args.seed):
        log(f"reusing the lake at {lake} (manifest matches; --fresh to re-simulate)")
        try:
            sim = json.loads((lake / SIM_SIDECAR).read_text(encoding="utf-8"))
            sim["reused"] = True
        except (OSError, ValueError):
            sim = None
    else:
        if manifest:
            log("lake manifest does not match the requested size/seed (or --fresh): re-simulating")
        sim = simulate(binary, lake, enterprises, days, args.seed)
        sim["reused"] = False
        manifest = read_manifest(lake)
    total = int(manifest["total_records"])
    per_kind = manifest_records(manifest)
    log(f"lake: {total:,} event records ({', '.join(f'{k} {n:,}' for k, n in per_kind.items())}), "
        f"{manifest['start']} .. {manifest['end']}")
    if sim:
        note = f" (measured when the lake was simulated, {sim.get('when', '?')}, binary {sim.get('binary', '?')})" if sim["reused"] else ""
        log(f"simulate: {sim['total_records']:,} records in {sim['wall_seconds']:.1f} s wall = "
            f"{sim['records_per_second']:,.0f} records/s{note}")
    else:
        log("simulate: throughput unknown (lake reused, no bench_simulate.json in it; --fresh to measure)")
    if total < min_records:
        die(f"the lake has {total:,} event records, fewer than the {min_records:,} this mode requires "
            f"(raise --enterprises, or --small for a quick check)")

    # 2. Bench date and inputs.
    day = dt.date.fromisoformat(manifest["end"])
    files = table_files(lake, day, rules["lookback_days"])
    any_file = {}
    for k in EVENT_TABLES:
        if not files[k]:
            found = partitions(lake, k, None, dt.date.max)
            if not found:
                die(f"the lake has no {k} partition at all; cannot give DuckDB its schema")
            any_file[k] = found[0]
    nbytes = sum(f.stat().st_size for fs in files.values() for f in fs)
    log(f"bench date {day}; Parquet read: " + ", ".join(f"{k} {len(v)} files" for k, v in files.items())
        + f"; {nbytes / 1e6:,.1f} MB")
    queries, applied = duckdb_queries(rules, day)
    log(f"queries: {', '.join(n for n, _ in queries)}; thresholds from {rules['source']}")
    if applied:
        for a in applied:
            log(f"  DuckDB rewrite in {a['file']}: {a['old']!r} -> {a['new']!r} ({a['why']})")
    log("  DuckDB render: float thresholds as CAST(x AS DOUBLE) (DataFusion's Float64 literals)")

    # 3. The previous night, then timed next nights and DuckDB runs, alternating order.
    prev = Path(str(out) + "-previous")
    prev_wall = prepare_previous_night(binary, lake, day, prev, args.model)
    prev_bl = Path(str(out) + "-previous-baseline")
    if baseline:
        prepare_previous_night(baseline, lake, day, prev_bl, args.model)
    pw_runs, bl_runs, dk_runs = [], [], []
    for i in range(args.repeats):
        order = ["pharmwatch", "baseline", "duckdb"] if baseline else ["pharmwatch", "duckdb"]
        if i % 2 == 1:
            order.reverse()
        for engine in order:
            if engine in ("pharmwatch", "baseline"):
                which, start = (binary, prev) if engine == "pharmwatch" else (baseline, prev_bl)
                r = run_pharmwatch(which, lake, day, out, start, args.model)
                (pw_runs if engine == "pharmwatch" else bl_runs).append(r)
                rep = f" (reports {r['reported']:.1f} s)" if r["reported"] is not None else ""
                log(f"  run {i + 1}/{args.repeats} {engine:<10} {r['wall']:8.3f} s wall{rep}, "
                    f"peak RSS {r['rss'] / 2**30:.2f} GiB, {sum(r['counts'].values())} hits, "
                    f"{r['risk_rows']} risk rows, days {r['days']}")
            else:
                r = run_duckdb(files, any_file, day, queries, args.duckdb_threads)
                dk_runs.append(r)
                log(f"  run {i + 1}/{args.repeats} duckdb     {r['wall']:8.3f} s wall "
                    f"(setup {r['setup']:.3f} s), peak RSS {r['rss'] / 2**30:.2f} GiB, {r['rows']} hits")

    # 4. Hit counts.
    pw_counts = pw_runs[-1]["counts"]
    dk_counts = dk_runs[-1]["counts"]
    unstable = [n for n, runs in (("pharmwatch", pw_runs), ("baseline", bl_runs), ("duckdb", dk_runs))
                if any(r["counts"] != runs[0]["counts"] for r in runs)]
    if bl_runs and bl_runs[-1]["counts"] != pw_counts:
        unstable.append("baseline (its hits differ from pharmwatch's)")
    names = list(dict.fromkeys(list(rules["indicators"]) + sorted(set(pw_counts) | set(dk_counts))))
    log("")
    log(f"hits per indicator on {day}:")
    log(f"  {'indicator':<24} {'pharmwatch':>10} {'duckdb':>10}")
    mismatched = []
    for n in names:
        a, b = pw_counts.get(n, 0), dk_counts.get(n, 0)
        flag = "" if a == b else "   <-- MISMATCH"
        if a != b:
            mismatched.append(n)
        log(f"  {n:<24} {a:>10} {b:>10}{flag}")
    log(f"  {'total':<24} {sum(pw_counts.values()):>10} {sum(dk_counts.values()):>10}")
    hits_match = not mismatched and not unstable

    # 5. Times.
    pw_med = statistics.median(r["wall"] for r in pw_runs)
    dk_med = statistics.median(r["wall"] for r in dk_runs)
    ratio = pw_med / dk_med if dk_med > 0 else float("inf")
    pw_rep = [r["reported"] for r in pw_runs if r["reported"] is not None]
    log("")
    log(f"nightly indicator SQL, {day}, lake of {total:,} records ({mode}), {args.repeats} runs each, median wall time:")
    log(f"  {'engine':<12} {'median s':>9}  runs (s)")
    log(f"  {'pharmwatch':<12} {pw_med:>9.3f}  {fmt_runs(pw_runs)}"
        + (f"   (own 'time:' median {statistics.median(pw_rep):.1f} s)" if pw_rep else ""))
    log(f"  {'duckdb':<12} {dk_med:>9.3f}  {fmt_runs(dk_runs)}")
    paired = None
    if bl_runs:
        bl_med = statistics.median(r["wall"] for r in bl_runs)
        diffs = [p["wall"] - b["wall"] for p, b in zip(pw_runs, bl_runs)]
        paired = {
            "binary": str(baseline), "version": binary_version(baseline),
            "wall_seconds": [r["wall"] for r in bl_runs], "median_seconds": bl_med,
            "ratio_over_duckdb": bl_med / dk_med if dk_med > 0 else float("inf"),
            "paired_differences": diffs, "median_difference": statistics.median(diffs),
            "pharmwatch_faster": sum(d < 0 for d in diffs),
        }
        log(f"  {'baseline':<12} {bl_med:>9.3f}  {fmt_runs(bl_runs)}   (ratio to duckdb {paired['ratio_over_duckdb']:.2f}x)")
        md = paired["median_difference"]
        log(f"  paired pharmwatch - baseline: median {md:+.3f} s ({md / bl_med * 100:+.1f} %), "
            f"pharmwatch faster in {paired['pharmwatch_faster']} of {len(diffs)} repeats")
    pw_rss = max(r["rss"] for r in pw_runs)
    dk_rss = max(r["rss"] for r in dk_runs)
    log(f"  ratio pharmwatch/duckdb: {ratio:.2f}x")
    log(f"  peak RSS: pharmwatch {pw_rss / 2**30:.2f} GiB, duckdb {dk_rss / 2**30:.2f} GiB")
    log(f"  (pharmwatch: the whole next-night process{' with the model' if args.model else ', rules only'},"
        " every output written; duckdb: connect + views + 7 queries fetched, in a child process)")
    dq = {n: statistics.median(r["per_query"][n] for r in dk_runs) for n, _ in queries}
    log("  duckdb per query (median s): " + ", ".join(f"{n.removesuffix('.sql')} {t:.3f}" for n, t in dq.items()))
    backfill = run_backfill(args, binary, lake, day, out, pw_med) if args.backfill else None

    result = {
        "mode": mode,
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "pharmwatch": {"binary": str(binary), "version": version, "command": pw_runs[0]["cmd"]},
        "duckdb": {"version": duckdb.__version__, "threads": args.duckdb_threads or "default"},
        "lake": {
            "path": str(lake), "enterprises": enterprises, "days": days, "seed": args.seed,
            "start": manifest["start"], "end": manifest["end"], "total_records": total, "records": per_kind,
            "min_records_required": min_records,
        },
        "simulate": sim,
        "bench_date": day.isoformat(),
        "files_read": {k: len(v) for k, v in files.items()},
        "bytes_read": nbytes,
        "thresholds": rules["thresholds"],
        "thresholds_source": rules["source"],
        "queries": [n for n, _ in queries],
        "duckdb_rewrites": applied,
        "duckdb_render": "float thresholds rendered as CAST(x AS DOUBLE)",
        "repeats": args.repeats,
        "pharmwatch_wall_seconds": [r["wall"] for r in pw_runs],
        "pharmwatch_reported_seconds": [r["reported"] for r in pw_runs],
        "duckdb_wall_seconds": [r["wall"] for r in dk_runs],
        "duckdb_setup_seconds": [r["setup"] for r in dk_runs],
        "duckdb_query_median_seconds": dq,
        "pharmwatch_model": args.model,
        "previous_night_seconds": prev_wall,
        "pharmwatch_peak_rss_bytes": [r["rss"] for r in pw_runs],
        "duckdb_peak_rss_bytes": [r["rss"] for r in dk_runs],
        "pharmwatch_days": pw_runs[-1]["days"],
        "pharmwatch_median_seconds": pw_med,
        "duckdb_median_seconds": dk_med,
        "ratio_pharmwatch_over_duckdb": ratio,
        "hits": {"pharmwatch": pw_counts, "duckdb": dk_counts},
        "baseline": paired,
        "backfill": backfill,
        "hits_match": hits_match,
        "mismatched_indicators": mismatched,
        "unstable_between_runs": unstable,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"  result: {json_path}")

    if not hits_match:
        bar = "!" * 78
        print(f"\n{bar}\nHIT COUNTS DIFFER between pharmwatch and DuckDB"
              + (f" (indicators: {', '.join(mismatched)})" if mismatched else "")
              + (f" (counts changed between runs of: {', '.join(unstable)})" if unstable else "")
              + "\nThe engines did not compute the same thing: the timing is NOT apples to apples.\n" + bar,
              file=sys.stderr, flush=True)
        return 2
    log("hit counts match per indicator: OK")
    if args.max_ratio is not None and ratio > args.max_ratio:
        print(f"\nREGRESSION: pharmwatch's night took {ratio:.2f}x DuckDB's time on the same files "
              f"(limit {args.max_ratio:.2f}x)", file=sys.stderr, flush=True)
        return 3
    if args.max_ratio is not None:
        log(f"ratio {ratio:.2f}x within the limit of {args.max_ratio:.2f}x: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
