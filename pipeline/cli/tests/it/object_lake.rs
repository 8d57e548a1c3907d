//! A lake on S3-compatible object storage: `simulate --out s3://…` publishes a province to a
//! real S3 server on loopback (moto's server from PyPI, started by the test; `scripts/test.sh`
//! installs it in the tests' venv), `nightly --lake s3://…` reads it into exactly the risk
//! list and counts the same province gives from a local folder, and `produce` publishes the
//! same messages from either to the test broker; the stream service lands its batches in a
//! bucket, where the nightly job reads every produced record once. A missing bucket and a missing
//! reference table are refused with the object named.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, http_get};

/// Kills the server on drop (a failing assertion leaves nothing behind).
pub(crate) struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_python() -> String {
    let how = "the object-storage tests need an S3-compatible server: moto's server from PyPI in \
               a venv. Run scripts/test.sh (it installs it and exports PHARMWATCH_TEST_PYTHON), \
               or: ~/.cache/pharmwatch/venv/bin/pip install 'moto[server]' && export \
               PHARMWATCH_TEST_PYTHON=~/.cache/pharmwatch/venv/bin/python";
    let py = std::env::var("PHARMWATCH_TEST_PYTHON")
        .unwrap_or_else(|_| panic!("PHARMWATCH_TEST_PYTHON is not set: {how}"));
    let ok = Command::new(&py)
        .args(["-c", "import moto.server, flask"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{py} cannot import moto's server: {how}");
    py
}

/// Starts moto's S3 server on a free loopback port; returns it and its address.
pub(crate) fn start_s3(dir: &Path) -> (Reaper, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join("moto.log")).unwrap();
    let child = Command::new(moto_python())
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let reaper = Reaper(child);
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    while http_get(&addr, "/").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto's server did not answer on {addr}: {}",
            std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (reaper, addr)
}

/// Creates `bucket` (an S3 CreateBucket: PUT /bucket).
pub(crate) fn create_bucket(addr: &str, bucket: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "create bucket: {answer}"
    );
}

/// Runs `body` (Python) with `s3`, a boto3 client of the test server (the S3 client moto's
/// server is built on, signing like any client); fails the test with `what` if it fails.
fn boto3(addr: &str, what: &str, body: &str) -> String {
    let script = format!(
        "import boto3, sys\n\
         s3 = boto3.client('s3', endpoint_url='http://{addr}', region_name='us-east-1', \
         aws_access_key_id='pharmwatch-test', aws_secret_access_key='pharmwatch-test')\n{body}"
    );
    let o = Command::new(moto_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{what}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// Writes local file `file` to an object.
pub(crate) fn s3_put(addr: &str, bucket: &str, key: &str, file: &Path) {
    let file = file.display().to_string();
    boto3(
        addr,
        &format!("put s3://{bucket}/{key}"),
        &format!("s3.upload_file({file:?}, '{bucket}', '{key}')\n"),
    );
}

/// The object keys under `prefix`.
pub(crate) fn s3_keys(addr: &str, bucket: &str, prefix: &str) -> Vec<String> {
    boto3(
        addr,
        &format!("list s3://{bucket}/{prefix}"),
        &format!(
            "for page in s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}', Prefix='{prefix}'):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       print(o['Key'])\n"
        ),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Reads an object.
fn s3_get(addr: &str, bucket: &str, key: &str) -> String {
    boto3(
        addr,
        &format!("get s3://{bucket}/{key}"),
        &format!(
            "sys.stdout.write(s3.get_object(Bucket='{bucket}', Key='{key}')['Body'].read().decode())\n"
        ),
    )
}

/// `pharmwatch ARGS` with the test server's connection in the AWS_* variables.
pub(crate) fn s3_command(addr: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pharmwatch"));
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", "pharmwatch-test")
        .env("AWS_SECRET_ACCESS_KEY", "pharmwatch-test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", format!("http://{addr}"))
        .env("AWS_ALLOW_HTTP", "true");
    c
}

fn pharmwatch(addr: &str, args: &[&str]) -> Output {
    s3_command(addr, args).output().unwrap()
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_nightly_job_reads_a_lake_on_object_storage_as_it_reads_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (_s3, addr) = start_s3(dir.path());
    create_bucket(&addr, "lake");
    let d = |p: &str| dir.path().join(p).to_string_lossy().to_string();
    let sim = [
        "simulate",
        "--enterprises",
        "60",
        "--days",
        "45",
        "--seed",
        "3",
        "--quiet",
        "--out",
    ];

    // The same province, published to the bucket and written to a folder.
    let mut remote = sim.to_vec();
    remote.push("s3://lake/province/2026");
    let o = pharmwatch(&addr, &remote);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("objects to s3://lake/province/2026"),
        "{}",
        text(&o)
    );
    let local = d("local");
    let mut folder = sim.to_vec();
    folder.push(&local);
    let o = pharmwatch(&addr, &folder);
    assert!(o.status.success(), "{}", text(&o));
    // The manifest is in the bucket, byte for byte the local one (a published lake is complete).
    let manifest = s3_get(&addr, "lake", "province/2026/manifest.json");
    let local_manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("local/manifest.json")).unwrap(),
    )
    .unwrap();
    let remote_manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        remote_manifest["total_records"],
        local_manifest["total_records"]
    );
    let end = local_manifest["end"].as_str().unwrap().to_string();

    // The nightly job over each: the same risk list, the same records read.
    let (out_s3, out_local) = (d("out-s3"), d("out-local"));
    let o = pharmwatch(
        &addr,
        &[
            "nightly",
            "--lake",
            "s3://lake/province/2026",
            "--date",
            &end,
            "--out",
            &out_s3,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = pharmwatch(
        &addr,
        &[
            "nightly", "--lake", &local, "--date", &end, "--out", &out_local,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let list = |out: &str| std::fs::read_to_string(Path::new(out).join("risk_list.csv")).unwrap();
    let (from_s3, from_folder) = (list(&out_s3), list(&out_local));
    assert!(
        from_folder.lines().count() > 1,
        "the province has risk rows"
    );
    assert_eq!(from_s3, from_folder, "the risk lists differ");
    let records = |out: &str| {
        let run: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(out).join("run.json")).unwrap(),
        )
        .unwrap();
        run["lake_records"].clone()
    };
    assert_eq!(records(&out_s3), records(&out_local));
    assert!(
        records(&out_s3).to_string().contains("sales"),
        "{}",
        records(&out_s3)
    );

    // `produce` publishes the bucket's records as it publishes the folder's: the same
    // messages per kind (topics of their own on the test broker).
    let broker = crate::common::broker();
    let from = (chrono::NaiveDate::parse_from_str(&end, "%Y-%m-%d").unwrap()
        - chrono::Duration::days(2))
    .to_string();
    let produce = |lake: &str, prefix: &str| -> Vec<(String, u64)> {
        let run = |args: &[&str]| {
            s3_command(&addr, args)
                .env("PHARMWATCH__STREAM__BROKERS", &broker)
                .env("PHARMWATCH__STREAM__TOPIC_PREFIX", prefix)
                .output()
                .unwrap()
        };
        let o = run(&["topics", "--partitions", "2"]);
        assert!(o.status.success(), "topics {prefix}: {}", text(&o));
        let o = run(&["produce", "--lake", lake, "--from", &from, "--to", &end]);
        assert!(o.status.success(), "produce {lake}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let topic = w.next()?.strip_prefix(prefix)?.to_string();
                Some((topic, w.next()?.parse().ok()?))
            })
            .collect()
    };
    let unique = std::process::id();
    let from_bucket = produce("s3://lake/province/2026", &format!("s3-{unique}."));
    let from_dir = produce(&local, &format!("dir-{unique}."));
    assert!(
        from_dir.iter().any(|(t, n)| t == "sales" && *n > 0),
        "{from_dir:?}"
    );
    assert_eq!(from_bucket, from_dir);

    // A bucket that does not exist, and a lake without its reference tables, are refused
    // with the object named; nothing is written.
    let o = pharmwatch(
        &addr,
        &[
            "nightly",
            "--lake",
            "s3://no-such-bucket/x",
            "--date",
            &end,
            "--out",
            &d("o1"),
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("s3://no-such-bucket/x/reference/enterprises.parquet"),
        "{}",
        text(&o)
    );
    let o = pharmwatch(
        &addr,
        &[
            "nightly",
            "--lake",
            "s3://lake/elsewhere",
            "--date",
            &end,
            "--out",
            &d("o2"),
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains(
            "reference table s3://lake/elsewhere/reference/enterprises.parquet is missing"
        ),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("o2/risk_list.csv").exists());
}

#[test]
fn the_stream_service_lands_its_batches_in_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let (_s3, addr) = start_s3(dir.path());
    create_bucket(&addr, "lake");
    let d = |p: &str| dir.path().join(p).to_string_lossy().to_string();
    let local = d("local");
    let o = pharmwatch(
        &addr,
        &[
            "simulate",
            "--enterprises",
            "60",
            "--days",
            "40",
            "--seed",
            "5",
            "--quiet",
            "--out",
            &local,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The streamed lake starts with the reference tables only (what the stream validates
    // against), in the bucket.
    for t in ["enterprises", "products", "batches"] {
        s3_put(
            &addr,
            "lake",
            &format!("streamed/reference/{t}.parquet"),
            &dir.path().join(format!("local/reference/{t}.parquet")),
        );
    }
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("local/manifest.json")).unwrap(),
    )
    .unwrap();
    let end =
        chrono::NaiveDate::parse_from_str(manifest["end"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let (from, to) = (
        (end - chrono::Duration::days(2)).to_string(),
        end.to_string(),
    );

    let broker = crate::common::broker();
    let unique = format!("s3stream-{}", std::process::id());
    let run = |args: &[&str]| -> Output {
        s3_command(&addr, args)
            .env("PHARMWATCH__STREAM__BROKERS", &broker)
            .env("PHARMWATCH__STREAM__TOPIC_PREFIX", format!("{unique}."))
            .env(
                "PHARMWATCH__STREAM__DEAD_LETTER_TOPIC",
                format!("{unique}.dead-letter"),
            )
            .env(
                "PHARMWATCH__STREAM__RISK_EVENTS_TOPIC",
                format!("{unique}.risk-events"),
            )
            .env("PHARMWATCH__STREAM__GROUP_ID", format!("g-{unique}"))
            .env("PHARMWATCH__STREAM__LAKE", "s3://lake/streamed")
            .env(
                "PHARMWATCH__STREAM__STORE",
                dir.path().join("stream/pharmwatch.db"),
            )
            .env(
                "PHARMWATCH__STREAM__METRICS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .output()
            .unwrap()
    };
    let o = run(&["topics", "--partitions", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["produce", "--lake", &local, "--from", &from, "--to", &to]);
    assert!(o.status.success(), "{}", text(&o));
    let produced: u64 = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("produced ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("produce prints its total");
    assert!(produced > 1000, "{}", text(&o));
    let o = run(&["stream", "--exit-when-idle", "3"]);
    assert!(o.status.success(), "stream: {}", text(&o));

    // Every batch landed as whole objects named by partition and offset.
    let keys = s3_keys(&addr, "lake", "streamed/");
    let landed: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains("/stream-p") && k.ends_with(".parquet"))
        .collect();
    assert!(!landed.is_empty(), "{keys:?}");
    assert!(
        keys.iter().all(|k| !k.ends_with(".tmp")),
        "no temporary object: {keys:?}"
    );

    // The nightly job over the bucket reads every produced record once (late uploads in the
    // first day's partition belong to the day before it).
    let day_before = (end - chrono::Duration::days(3)).to_string();
    let out = d("out-streamed");
    let o = pharmwatch(
        &addr,
        &[
            "nightly",
            "--lake",
            "s3://lake/streamed",
            "--from",
            &day_before,
            "--to",
            &to,
            "--no-model",
            "--out",
            &out,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("run.json")).unwrap())
            .unwrap();
    let read: u64 = run_json["lake_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[1].as_u64().unwrap())
        .sum();
    assert_eq!(read, produced, "{}", run_json["lake_records"]);
}
