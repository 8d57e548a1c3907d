//! A lake on S3-compatible object storage: `simulate --out s3://…` publishes a province to a
//! real S3 server on loopback (moto's server from PyPI, started by the test; `scripts/test.sh`
//! installs it in the tests' venv), `nightly --lake s3://…` reads it into exactly the risk
//! list and counts the same province gives from a local folder, and `produce` publishes the
//! same messages from either to the test broker. A missing bucket and a missing
//! reference table are refused with the object named.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, http_get};

/// Kills the server on drop (a failing assertion leaves nothing behind).
struct Reaper(Child);

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
fn start_s3(dir: &Path) -> (Reaper, String) {
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
fn create_bucket(addr: &str, bucket: &str) {
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

/// Reads an object with boto3 (the S3 client moto's server is built on), signed like any
/// client's request.
fn s3_get(addr: &str, bucket: &str, key: &str) -> String {
    let script = format!(
        "import boto3, sys\n\
         s3 = boto3.client('s3', endpoint_url='http://{addr}', region_name='us-east-1', \
         aws_access_key_id='pharmwatch-test', aws_secret_access_key='pharmwatch-test')\n\
         sys.stdout.write(s3.get_object(Bucket='{bucket}', Key='{key}')['Body'].read().decode())\n"
    );
    let o = Command::new(moto_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "get s3://{bucket}/{key}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn pharmwatch(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "pharmwatch-test")
        .env("AWS_SECRET_ACCESS_KEY", "pharmwatch-test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", format!("http://{addr}"))
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
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
        let o = Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
            .args(["topics", "--partitions", "2"])
            .env("PHARMWATCH__STREAM__BROKERS", &broker)
            .env("PHARMWATCH__STREAM__TOPIC_PREFIX", prefix)
            .output()
            .unwrap();
        assert!(o.status.success(), "topics {prefix}: {}", text(&o));
        let o = Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
            .args(["produce", "--lake", lake, "--from", &from, "--to", &end])
            .env("AWS_ACCESS_KEY_ID", "pharmwatch-test")
            .env("AWS_SECRET_ACCESS_KEY", "pharmwatch-test")
            .env("AWS_ENDPOINT", format!("http://{addr}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("PHARMWATCH__STREAM__BROKERS", &broker)
            .env("PHARMWATCH__STREAM__TOPIC_PREFIX", prefix)
            .output()
            .unwrap();
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
