#!/usr/bin/env python3
"""The nightly job as the province grows: wall time and peak RSS of a real next night, rules
only and with the anomaly model, beside DuckDB on the same SQL and files, at several sizes.

For each size (enterprises x 60 days; default 1000, 2000, 5000, 10000) it runs
scripts/bench_nightly.py twice on the same simulated lake (simulated once per size, reused when
its manifest matches): rules only (`--no-model`) and with the model (`--model`). Each of those
runs the previous night once (untimed, from scratch: it writes the day store a next night reads)
and then times the next night and DuckDB alternately. The table printed at the end (Markdown,
for BENCHMARKS.md) has per size: records, pharmwatch's rules-only and with-model medians and
peak RSS, DuckDB's median and peak RSS, and the ratios.

Run it through scripts/bench_scale.sh (it makes the DuckDB venv). Nothing here builds pharmwatch.
Lakes go to /tmp/pharmwatch-scale-<N> unless --lake-dir is given; --prune removes each lake after
its size is measured (a 10,000-enterprise lake is about 2 GB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench_nightly.py"


def run(size: int, days: int, lake: Path, model: bool, repeats: int, binary: str, out_json: Path) -> dict:
    cmd = [sys.executable, str(BENCH), "--enterprises", str(size), "--days", str(days),
           "--lake", str(lake), "--repeats", str(repeats), "--binary", binary,
           "--min-records", "0", "--json", str(out_json)]
    if model:
        cmd.append("--model")
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd)
    if p.returncode not in (0,):
        sys.exit(f"bench_nightly.py failed for {size} enterprises (model={model}): exit {p.returncode}")
    return json.loads(out_json.read_text(encoding="utf-8"))


def gib(b: int) -> str:
    return f"{b / 2**30:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,2000,5000,10000", help="enterprises per lake, comma-separated")
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per engine and mode (default 3)")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "pharmwatch"))
    ap.add_argument("--lake-dir", default="/tmp", help="where the lakes go (pharmwatch-scale-N)")
    ap.add_argument("--prune", action="store_true", help="remove each lake (and its outputs) once measured")
    ap.add_argument("--json", default="/tmp/pharmwatch-bench-scale.json")
    args = ap.parse_args()

    rows = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        lake = Path(args.lake_dir) / f"pharmwatch-scale-{size}"
        rules = run(size, args.days, lake, False, args.repeats, args.binary, Path(f"/tmp/pharmwatch-scale-{size}-rules.json"))
        model = run(size, args.days, lake, True, args.repeats, args.binary, Path(f"/tmp/pharmwatch-scale-{size}-model.json"))
        rows.append({"enterprises": size, "records": rules["lake"]["total_records"],
                     "simulate": rules.get("simulate"), "rules": rules, "model": model})
        if args.prune:
            for p in [lake, Path(str(lake) + "-nightly"), Path(str(lake) + "-nightly-previous")]:
                shutil.rmtree(p, ignore_errors=True)

    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print()
    print("| enterprises | records | rules only | peak RSS | with model | peak RSS | DuckDB (rules SQL) | peak RSS "
          "| rules / DuckDB | model / rules | previous night (model, from scratch) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ru, mo = r["rules"], r["model"]
        dk_med = (ru["duckdb_median_seconds"] + mo["duckdb_median_seconds"]) / 2
        dk_rss = max(ru["duckdb_peak_rss_bytes"] + mo["duckdb_peak_rss_bytes"])
        print(f"| {r['enterprises']:,} | {r['records'] / 1e6:.1f} M "
              f"| {ru['pharmwatch_median_seconds']:.2f} s | {gib(max(ru['pharmwatch_peak_rss_bytes']))} GiB "
              f"| {mo['pharmwatch_median_seconds']:.2f} s | {gib(max(mo['pharmwatch_peak_rss_bytes']))} GiB "
              f"| {dk_med:.2f} s | {gib(dk_rss)} GiB "
              f"| {ru['pharmwatch_median_seconds'] / dk_med:.2f}× "
              f"| {mo['pharmwatch_median_seconds'] / ru['pharmwatch_median_seconds']:.2f}× "
              f"| {mo['previous_night_seconds']:.1f} s |")
    print(f"\nresult: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
