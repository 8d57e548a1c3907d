#!/usr/bin/env python3
"""Rules on noisy provinces: false alarms on clean provinces and detection by magnitude band.

For each seed, simulates a province (noise on, the default), runs the nightly job over the
last DAYS days with the rules only (`--no-model`) and reads its risk list against the labels:

- clean provinces (`--anomalies-per-kind 0`): listed enterprise-days ÷ enterprise-days, per
  indicator and overall, and the share at grade C or D (the rows that draft caution notices);
- provinces with anomalies (the default count per kind): for each kind and magnitude band
  (thirds of the kind's range, 0 = least obvious … 2 = most obvious), the share of labels whose
  enterprise is listed with an item of the label's kind on a day of the label's window (the
  matching rule of `pipeline/sim/src/evaluate.rs`), and the false-alarm rate on enterprises
  without labels.

Usage (from the repository root, after `cargo build -p pharmwatch`):

    python3 scripts/detection_check.py --bin /work/w16-target/debug/pharmwatch \
        --work /tmp/detect --seeds 1 2 3 4 5 --enterprises 300 --days 60

The ranges below mirror `AnomalyKind::magnitude_range` in pipeline/sim/src/simulate/anomalies.rs.
"""

import argparse
import collections
import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

# kind -> (lo, hi, larger_is_clearer)
RANGES = {
    "inventory_mismatch": (1.0, 50.0, True),
    "sold_not_bought": (1.0, 8.0, True),
    "sales_spike": (1.5, 10.0, True),
    "special_drug_volume": (1.5, 10.0, True),
    "purchase_spike": (1.5, 6.0, True),
    "production_spike": (1.5, 6.0, True),
    "expired_batch_sold": (1.0, 5.0, True),
    "failed_batch_sold": (1.0, 5.0, True),
    "trace_code_duplicate": (1.0, 5.0, True),
    "price_below_median": (0.3, 0.9, False),
    "reporting_stopped": (1.0, 7.0, True),
    "subtle_diversion": (1.1, 2.0, True),
}


def band(kind, m):
    lo, hi, larger = RANGES[kind]
    x = min(max((m - lo) / (hi - lo), 0.0), 1.0)
    if not larger:
        x = 1.0 - x
    return min(int(x * 3), 2)


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def province(args, seed, clean):
    tag = "clean" if clean else "anom"
    lake = Path(args.work) / f"{tag}-{seed}"
    out = Path(args.work) / f"{tag}-{seed}-out"
    if not (lake / "manifest.json").exists() or args.fresh:
        # A fresh directory: the simulator does not remove files of an earlier run.
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        cmd = [args.bin, "simulate", "--enterprises", str(args.enterprises), "--days",
               str(args.days), "--seed", str(seed), "--out", str(lake), "--quiet"]
        if clean:
            cmd += ["--anomalies-per-kind", "0"]
        cmd += [x for part in args.noise_off for x in ("--noise-off", part)]
        run(cmd)
    manifest = json.loads((lake / "manifest.json").read_text())
    end = dt.date.fromisoformat(manifest["end"])
    start = end - dt.timedelta(days=args.judge_days - 1)
    run([args.bin, "nightly", "--lake", str(lake), "--from", start.isoformat(), "--to",
         end.isoformat(), "--out", str(out), "--no-model", "--quiet", "--no-notices"])
    rows = list(csv.DictReader(open(out / "risk_list.csv", encoding="utf-8")))
    labels = list(csv.DictReader(open(lake / "labels.csv", encoding="utf-8")))
    ents = [r["enterprise_id"] for r in csv.DictReader(
        open(lake / "reference" / "enterprises.csv", encoding="utf-8"))]
    return start, end, rows, labels, ents


def false_alarms(start, end, rows, labels, ents, per_indicator):
    labelled = {l["enterprise_id"] for l in labels}
    clean_ents = [e for e in ents if e not in labelled]
    days = (end - start).days + 1
    denom = len(clean_ents) * days
    listed, cd = set(), set()
    for r in rows:
        if r["enterprise_id"] in labelled:
            continue
        key = (r["enterprise_id"], r["date"])
        listed.add(key)
        if r["grade"] in ("C", "D"):
            cd.add(key)
        for ind in r["indicators"].split(","):
            if ind:
                per_indicator[ind].add((r["enterprise_id"], r["date"]))
    return len(listed), len(cd), denom


def detection(start, end, rows, labels, found):
    listed = collections.defaultdict(set)
    for r in rows:
        for ind in r["indicators"].split(","):
            listed[(r["enterprise_id"], ind)].add(dt.date.fromisoformat(r["date"]))
    for l in labels:
        kind = l["kind"]
        a, b = dt.date.fromisoformat(l["start_date"]), dt.date.fromisoformat(l["end_date"])
        if b < start or a > end or not l.get("magnitude"):
            continue
        ind = "model_anomaly" if kind == "subtle_diversion" else kind
        days = listed.get((l["enterprise_id"], ind), set())
        hit = any(a <= d <= b for d in days)
        m = float(l["magnitude"])
        found[(kind, band(kind, m))].append((hit, m, l["enterprise_id"], l["product_id"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/debug/pharmwatch")
    ap.add_argument("--work", default="/tmp/detect")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--enterprises", type=int, default=300)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--judge-days", type=int, default=14)
    ap.add_argument("--noise-off", action="append", default=[])
    ap.add_argument("--fresh", action="store_true", help="simulate again even if the lake exists")
    ap.add_argument("--skip-clean", action="store_true")
    ap.add_argument("--skip-anomalies", action="store_true")
    ap.add_argument("--misses", action="store_true", help="list the missed labels of bands 1-2")
    args = ap.parse_args()

    if not args.skip_clean:
        print("clean noisy provinces (no planted anomalies), rules only")
        tot = [0, 0, 0]
        per_ind_all = collections.Counter()
        for seed in args.seeds:
            per_ind = collections.defaultdict(set)
            start, end, rows, labels, ents = province(args, seed, clean=True)
            n, cd, denom = false_alarms(start, end, rows, labels, ents, per_ind)
            tot = [tot[0] + n, tot[1] + cd, tot[2] + denom]
            detail = ", ".join(f"{k} {len(v)}" for k, v in sorted(per_ind.items()))
            print(f"  seed {seed}: {n}/{denom} = {100 * n / denom:.3f} % listed, "
                  f"C/D {100 * cd / denom:.3f} %  [{detail}]")
            for k, v in per_ind.items():
                per_ind_all[k] += len(v)
        print(f"  all: {tot[0]}/{tot[2]} = {100 * tot[0] / tot[2]:.3f} %, "
              f"C/D {100 * tot[1] / tot[2]:.3f} %")
        for k, v in sorted(per_ind_all.items()):
            print(f"    {k:<22} {v:>4} enterprise-days = {100 * v / tot[2]:.3f} %")

    if not args.skip_anomalies:
        print("noisy provinces with anomalies, rules only: detection by band (intended indicator)")
        found = collections.defaultdict(list)
        tot = [0, 0, 0]
        for seed in args.seeds:
            start, end, rows, labels, ents = province(args, seed, clean=False)
            detection(start, end, rows, labels, found)
            n, cd, denom = false_alarms(start, end, rows, labels, ents,
                                        collections.defaultdict(set))
            tot = [tot[0] + n, tot[1] + cd, tot[2] + denom]
        print(f"  false alarms on unlabelled enterprises: {100 * tot[0] / tot[2]:.3f} %, "
              f"C/D {100 * tot[1] / tot[2]:.3f} %")
        print(f"  {'kind':<22} {'band 0':>10} {'band 1':>10} {'band 2':>10}")
        for kind in RANGES:
            cells = []
            for b in range(3):
                xs = found.get((kind, b), [])
                hits = sum(1 for x in xs if x[0])
                cells.append(f"{hits}/{len(xs)}" + (f" {hits / len(xs):.2f}" if xs else ""))
            print(f"  {kind:<22} " + " ".join(f"{c:>10}" for c in cells))
        if args.misses:
            for (kind, b), xs in sorted(found.items()):
                for hit, m, e, p in xs:
                    if not hit and b >= 1:
                        print(f"    missed {kind} band {b} magnitude {m} {e} {p}")


if __name__ == "__main__":
    main()
