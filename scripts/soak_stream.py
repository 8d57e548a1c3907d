#!/usr/bin/env python3
"""Soak of the stream service: a steady flow for a long while, with crashes and a broker restart.

Runs `pharmwatch stream` for --minutes against a tansu broker on SQLite storage (it survives its
own restart) while `pharmwatch produce --rate R` feeds a simulated province at a steady rate; the
service is killed with SIGKILL every --kill-every seconds and restarted the way systemd restarts
it (after the group's session timeout); the broker is killed and restarted once, half-way.
Every --sample seconds it records the service's resident memory (VmRSS, split into RssAnon, the
heap the process holds, and RssFile, file pages mapped, mostly the store's SQLite memory map:
page cache the kernel can take back), its consumer lag (`pharmwatch_stream_consumer_lag` summed
over partitions), the entries of its in-memory state (`pharmwatch_stream_state_entries`) and the
size of its store file.

At the end a clean instance (its own group, store and lake) reads the same topics once, and
the two are compared: the same risk events (ids), the same records accepted and rejected. The verdict is printed with the samples' summary: memory flat (the last third's
median of RssAnon, state entries and store size against the middle third's: the first third is
the warm-up while the 29 days of windows fill), lag back to zero after every disturbance and at
the end.
Exit status 0 when the output equals the clean run's, the lag ends at zero and memory is flat,
1 otherwise.

Usage: scripts/soak_stream.py --pharmwatch target/release/pharmwatch [--minutes 30]
       [--rate 2000] [--enterprises 300] [--kill-every 300] [--sample 10] [--start 2026-06-01]
       [--keep DIR]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

SESSION_MS = 6000
# At least the simulator's records per enterprise and day (83 measured at 200 enterprises): the
# days streamed outlast the soak, and the producer is stopped at its end.
RECORDS_PER_ENTERPRISE_DAY = 80


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{port} after {limit} s")


class Broker:
    """A tansu broker on SQLite storage in `work`, restartable on the same port."""

    def __init__(self, tansu, work, port):
        self.tansu, self.work, self.port, self.proc, self.starts = tansu, work, port, None, 0

    def start(self):
        self.starts += 1
        log = open(os.path.join(self.work, f"tansu-{self.starts}.log"), "w")
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [self.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "sqlite://./tansu.db"],
            cwd=self.work, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def config(work, name, port, prefix, metrics_port):
    """Writes WORK/NAME.toml: the stream's table with its own group, lake and store."""
    lake = os.path.join(work, f"{name}-lake")
    os.makedirs(lake, exist_ok=True)
    shutil.copytree(os.path.join(work, "lake", "reference"), os.path.join(lake, "reference"),
                    dirs_exist_ok=True)
    path = os.path.join(work, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f"""[stream]
brokers = "127.0.0.1:{port}"
group_id = "soak-{name}"
topic_prefix = "{prefix}."
dead_letter_topic = "{prefix}.dead-letter"
risk_events_topic = "{prefix}.risk-events"
lake = "{lake}"
store = "{work}/{name}-out/pharmwatch.db"
baseline = "{work}/baseline"
metrics_listen = "127.0.0.1:{metrics_port}"

[stream.kafka]
"session.timeout.ms" = "{SESSION_MS}"
""")
    return path


def metric(addr, name):
    """The sum of a metric's series at /metrics, or None when the service does not answer."""
    try:
        text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return sum(float(l.split()[-1]) for l in text.splitlines()
               if l.startswith(name + "{") or l.startswith(name + " "))


def memory_mib(pid):
    """(VmRSS, RssAnon, RssFile) of a process in MiB, None for each when it is gone."""
    out = {"VmRSS:": None, "RssAnon:": None, "RssFile:": None}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split()[0] if line.strip() else ""
                if key in out:
                    out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out["VmRSS:"], out["RssAnon:"], out["RssFile:"]


def file_mib(path):
    """Size of a SQLite store with its write-ahead log, MiB."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(path + suffix)
        except OSError:
            pass
    return total / 2**20


def store_summary(db):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    ids = {r[0] for r in c.execute("SELECT id FROM risk_events")}
    accepted, rejected, consumed = c.execute(
        "SELECT COALESCE(SUM(accepted),0), COALESCE(SUM(rejected),0), COALESCE(SUM(consumed),0)"
        " FROM stream_counts").fetchone()
    return ids, accepted, rejected, consumed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pharmwatch", required=True)
    ap.add_argument("--tansu", default=shutil.which("tansu")
                    or os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--enterprises", type=int, default=300)
    ap.add_argument("--kill-every", type=float, default=300)
    ap.add_argument("--sample", type=float, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", default="2026-06-01",
                    help="first simulated day (the built-in working-day calendar covers 2025–2026)")
    ap.add_argument("--keep")
    a = ap.parse_args()
    if not os.access(a.tansu, os.X_OK):
        sys.exit("tansu missing: cargo install tansu --version 0.6.0 --locked "
                 "--features dynostore,libsql")
    pw = os.path.abspath(a.pharmwatch)
    work = tempfile.mkdtemp(prefix="pharmwatch-soak.")
    run = lambda *args, **kw: subprocess.run([pw, *args], check=True, **kw)

    # Enough streamed days for the flow to last the soak, after 35 days of history.
    seconds = a.minutes * 60
    days = max(1, int(a.rate * seconds / (a.enterprises * RECORDS_PER_ENTERPRISE_DAY)) + 1)
    print(f"== simulate {a.enterprises} enterprises x {35 + days} days (seed {a.seed})", flush=True)
    run("simulate", "--enterprises", str(a.enterprises), "--days", str(35 + days), "--seed",
        str(a.seed), "--start", a.start, "--out", os.path.join(work, "lake"), "--anomaly-days",
        str(min(days, 14)), "--quiet", stdout=subprocess.DEVNULL)
    manifest = json.load(open(os.path.join(work, "lake", "manifest.json")))
    import datetime as dt
    last = dt.date.fromisoformat(manifest["end"])
    first = last - dt.timedelta(days=days - 1)
    run("nightly", "--lake", os.path.join(work, "lake"), "--date", str(first - dt.timedelta(days=1)),
        "--out", os.path.join(work, "baseline"), "--no-model", "--no-notices", "--quiet",
        stdout=subprocess.DEVNULL)

    port = free_port()
    broker = Broker(a.tansu, work, port)
    broker.start()
    soak_metrics = free_port()
    soak_cfg = config(work, "soak", port, "soak", soak_metrics)
    run("topics", "--config", soak_cfg, "--partitions", "4", stdout=subprocess.DEVNULL)

    producer = subprocess.Popen(
        [pw, "produce", "--config", soak_cfg, "--lake", os.path.join(work, "lake"),
         "--from", str(first), "--to", str(last), "--rate", str(a.rate)],
        stdout=open(os.path.join(work, "produce.out"), "w"),
        stderr=open(os.path.join(work, "produce.log"), "w"))

    starts = 0
    service = None

    def start_service():
        nonlocal starts, service
        starts += 1
        service = subprocess.Popen(
            [pw, "stream", "--config", soak_cfg],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(work, f"stream-{starts}.log"), "w"))

    start_service()
    addr = f"127.0.0.1:{soak_metrics}"
    samples = []  # (seconds, rss, anon, file MiB, lag, state entries, store MiB, event)
    store_db = os.path.join(work, "soak-out", "pharmwatch.db")
    t0 = time.time()
    next_kill = t0 + a.kill_every
    broker_restart_at = t0 + seconds / 2
    restarted_broker = False
    kills = 0
    produced_done_at = None
    end = t0 + seconds
    next_sample = t0
    while True:
        now = time.time()
        event = ""
        if producer.poll() is not None and produced_done_at is None:
            produced_done_at = now
            if producer.returncode != 0:
                sys.exit(f"the producer failed; see {work}/produce.log")
            print(f"the producer sent everything after {now - t0:.0f} s: the flow ends before "
                  f"the soak (raise --enterprises)", flush=True)
        if now >= next_kill and now < end:
            service.kill()
            service.wait()
            kills += 1
            event = "kill -9"
            time.sleep(SESSION_MS / 1000 + 1)  # systemd's RestartSec past the session timeout
            start_service()
            next_kill = time.time() + a.kill_every
        elif not restarted_broker and now >= broker_restart_at:
            broker.kill()
            event = "broker down"
            time.sleep(5)
            broker.start()
            restarted_broker = True
            event = "broker restarted"
        elif service.poll() is not None:
            # The service stopped by itself: a supervisor restarts it, and the soak says so.
            event = f"service exited {service.returncode}, restarted"
            start_service()
        if now >= next_sample or event:
            lag = metric(addr, "pharmwatch_stream_consumer_lag")
            entries = metric(addr, "pharmwatch_stream_state_entries")
            rss, anon, mapped = memory_mib(service.pid)
            samples.append((round(now - t0, 1), rss, anon, mapped, lag, entries,
                            round(file_mib(store_db), 1), event))
            print(f"{samples[-1][0]:8.1f} s  rss {rss or 0:7.1f} MiB (anon {anon or 0:7.1f}, "
                  f"file {mapped or 0:7.1f})  lag {'-' if lag is None else int(lag):>8}  "
                  f"state {'-' if entries is None else int(entries):>9}  "
                  f"store {samples[-1][6]:7.1f} MiB  {event}", flush=True)
            next_sample = now + a.sample
        # After the soak's time: wait for everything produced to be read (lag 0), then stop.
        if now >= end and produced_done_at is None:
            # The flow ends with the soak: what was produced is what the clean run reads.
            producer.terminate()
            producer.wait()
            produced_done_at = now
        if now >= end and produced_done_at is not None:
            lag = metric(addr, "pharmwatch_stream_consumer_lag")
            # A service without partitions (between a revocation and the next assignment)
            # reports no lag: that is not caught up.
            if lag == 0 and (metric(addr, "pharmwatch_stream_assigned_partitions") or 0) > 0:
                break
            if now > end + 600:
                print("the lag did not return to zero within 10 minutes of the end")
                break
        time.sleep(0.5)
    time.sleep(8)  # a day whose watermark passed last closes after its grace
    service.send_signal(signal.SIGTERM)
    service.wait(timeout=60)
    final_lag = samples[-1][4]

    # The clean run: one instance, its own group, store and lake, over the same topics.
    clean_cfg = config(work, "clean", port, "soak", free_port())
    with open(clean_cfg) as f:
        text = f.read().replace('risk_events_topic = "soak.risk-events"',
                                'risk_events_topic = "soak.clean-risk-events"').replace(
            'dead_letter_topic = "soak.dead-letter"', 'dead_letter_topic = "soak.clean-dead-letter"')
    with open(clean_cfg, "w") as f:
        f.write(text)
    run("topics", "--config", clean_cfg, "--partitions", "4", stdout=subprocess.DEVNULL)
    run("stream", "--config", clean_cfg, "--exit-when-idle", "5", stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "clean.log"), "w"))
    broker.kill()

    soak = store_summary(os.path.join(work, "soak-out", "pharmwatch.db"))
    clean = store_summary(os.path.join(work, "clean-out", "pharmwatch.db"))
    # The same events and the same records accepted and refused: a message the producer sent
    # twice (its acknowledgement lost when the broker died) is on the topic twice, and both
    # runs refuse the repeat.
    same = soak[0] == clean[0] and soak[1] == clean[1] and soak[2] == clean[2]
    n = len(samples)

    def thirds(col):
        """Median of the middle and of the last third of a sampled column."""
        vals = [s[col] for s in samples if s[col] is not None]
        k = max(1, len(vals) // 3)
        return statistics.median(vals[k:2 * k] or vals), statistics.median(vals[-k:]), max(vals)

    growth = {}
    for name, col in (("RSS", 1), ("RssAnon", 2), ("RssFile", 3), ("state entries", 5),
                      ("store MiB", 6)):
        mid, last, top = thirds(col)
        growth[name] = (mid, last, top, (last / mid - 1) * 100 if mid else 0.0)
    # Flat: the heap and the state hold their level from the middle third to the last (within
    # 10 %), and the store stops growing once its look-backs are full.
    flat = all(abs(growth[k][3]) <= 10 for k in ("RssAnon", "state entries", "store MiB"))
    lags = [s[4] for s in samples if s[4] is not None]
    print()
    print(f"soak: {a.minutes:g} min at {a.rate:g} records/s, {a.enterprises} enterprises, "
          f"{kills} kill -9, {broker.starts - 1} broker restart, {starts} service starts, "
          f"{n} samples")
    print(f"records: consumed {soak[3]:.0f} (clean run {clean[3]:.0f}), accepted {soak[1]:.0f} "
          f"(clean run {clean[1]:.0f}), rejected {soak[2]:.0f} (clean run {clean[2]:.0f}); "
          f"risk events {len(soak[0])} (clean run {len(clean[0])}, same ids: {soak[0] == clean[0]})")
    for name, (mid, last, top, pct) in growth.items():
        print(f"{name}: median middle third {mid:.0f}, last third {last:.0f} ({pct:+.1f} %), "
              f"max {top:.0f}")
    print("memory flat" if flat else "MEMORY NOT FLAT (RssAnon, state or store grew > 10 %)")
    print(f"lag: max {max(lags):.0f}, at the end {final_lag:.0f}")
    print("output equals one clean run" if same else "OUTPUT DIFFERS from the clean run")
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        with open(os.path.join(a.keep, "samples.tsv"), "w") as f:
            f.write("seconds\trss_mib\tanon_mib\tfile_mib\tlag\tstate_entries\tstore_mib\tevent\n")
            for s in samples:
                f.write("\t".join("" if v is None else str(v) for v in s) + "\n")
        for name in os.listdir(work):
            if name.endswith(".log"):
                shutil.copy(os.path.join(work, name), a.keep)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if same and final_lag == 0 and flat else 1)


if __name__ == "__main__":
    main()
