//! The bad-input corpus: malformed input of every kind at every entry point a user or a
//! platform feeds — record files (`nightly --input`, NDJSON and CSV, every record kind),
//! findings (`measures decide`), contacts, calendar years, the configuration file, the rules and
//! the inspector roster — each run through the real binary. (The Kafka messages' corpus is in
//! `stream.rs`, `malformed_messages_go_to_the_dead_letter_with_their_reasons`.)
//!
//! Every case states where the refusal must point (file, and line or index where the input has
//! them), the field and words of the reason; record files also check that every good row is
//! accepted, `read = accepted + rejected` per file, and the exit status (2: some rows were
//! rejected; 1: the input was refused as a whole). All failures of the corpus are reported
//! together.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::NaiveDate;
use pharmwatch::simulate::{self, SimConfig};
use pharmwatch_regulation::Calendar;
use pharmwatch_schemas::EventKind;
use serde_json::{Value, json};

fn pharmwatch(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pharmwatch"));
    c.args(args).env_remove("PHARMWATCH_CONFIG");
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The corpus' failures, reported together at the end.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn assert_none(self, cases: usize) {
        assert!(
            self.0.is_empty(),
            "{} of {cases} bad-input cases failed:\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}

/// A simulated province of 20 enterprises over 30 days (every kind of record occurs), and
/// its first day.
fn province(dir: &Path) -> (PathBuf, NaiveDate) {
    let lake = dir.join("lake");
    let start = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    simulate::run(
        &SimConfig {
            enterprises: 20,
            days: 30,
            start,
            seed: 5,
            anomaly_days: 0,
            anomalies_per_kind: Some(0),
            out: lake.clone(),
            progress: false,
            noise: pharmwatch_sim::simulate::noise::NoiseConfig::off(),
        },
        &Calendar::embedded().unwrap(),
    )
    .unwrap();
    (lake, start)
}

/// The first row of `kind` in the lake, as the JSON of its contract fields.
async fn first_row(lake: &Path, kind: EventKind) -> Value {
    let from = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2100, 1, 1).unwrap();
    for (_, dir) in pharmwatch::lake::partitions(lake, kind, from, to).unwrap() {
        for file in pharmwatch::lake::day_files(&dir).unwrap() {
            if let Some(r) = crate::common::first_row_as_json(&file, kind).await {
                return r;
            }
        }
    }
    panic!("the simulated lake has no {kind} row")
}

/// One malformed row: its text (bytes), the field the dead letter must name and words of the
/// reason.
struct BadRow {
    bytes: Vec<u8>,
    field: &'static str,
    reason: &'static str,
}

fn bad(v: &Value, field: &'static str, reason: &'static str) -> BadRow {
    BadRow {
        bytes: v.to_string().into_bytes(),
        field,
        reason,
    }
}

fn raw(s: &[u8], field: &'static str, reason: &'static str) -> BadRow {
    BadRow {
        bytes: s.to_vec(),
        field,
        reason,
    }
}

/// `good` with `key` set to `val`.
fn with(good: &Value, key: &str, val: Value) -> Value {
    let mut v = good.clone();
    v[key] = val;
    v
}

/// `good` without `key`.
fn without(good: &Value, key: &str) -> Value {
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove(key);
    v
}

/// The malformations every record kind gets in NDJSON.
fn common_ndjson(good: &Value, has_quantity: bool) -> Vec<BadRow> {
    let mut rows = vec![
        raw(b"{not json", "-", "invalid JSON"),
        raw(b"\"a bare string\"", "-", "invalid JSON"),
        raw(b"{}", "event_id", "missing field"),
        bad(
            &Value::Array(good.as_object().unwrap().values().cloned().collect()),
            "-",
            "JSON array",
        ),
        raw(
            format!("{} trailing", with(good, "event_id", json!("BI-trail"))).as_bytes(),
            "-",
            "trailing characters",
        ),
        bad(&without(good, "event_time"), "event_time", "missing field"),
        bad(
            &with(good, "colour", json!("red")),
            "colour",
            "unknown field",
        ),
        bad(
            &with(good, "event_time", json!("yesterday")),
            "event_time",
            "",
        ),
        bad(
            &with(good, "event_time", json!("2031-01-01T10:00:00+08:00")),
            "event_time",
            "date out of range",
        ),
        bad(
            &with(good, "enterprise_id", json!("91110000600037341X")),
            "enterprise_id",
            "check character",
        ),
        bad(
            &with(good, "enterprise_id", json!("91110000600037341L")),
            "enterprise_id",
            "unknown enterprise",
        ),
        bad(
            &with(good, "event_id", Value::Null),
            "event_id",
            "invalid type",
        ),
        bad(
            &with(good, "event_id", json!("X".repeat(65))),
            "event_id",
            "1–64",
        ),
        raw(b"{\"event_id\":\"BI-\xff\xfe\"}", "-", "UTF-8"),
    ];
    if has_quantity {
        let text = with(good, "quantity", json!(7)).to_string();
        rows.push(raw(
            text.replace("\"quantity\":7", "\"quantity\":1e999")
                .as_bytes(),
            "quantity",
            "out of range",
        ));
        rows.push(bad(
            &with(good, "quantity", json!("seven")),
            "quantity",
            "invalid type",
        ));
    }
    rows
}

/// The malformations particular to each kind.
fn kind_ndjson(kind: EventKind, good: &Value) -> Vec<BadRow> {
    match kind {
        EventKind::Sales => vec![
            bad(&with(good, "quantity", json!(-3)), "quantity", "negative"),
            bad(&with(good, "quantity", json!(0)), "quantity", "no movement"),
            bad(
                &with(good, "unit_price", json!(-1.5)),
                "unit_price",
                "negative",
            ),
            bad(
                &with(good, "buyer_id", good["enterprise_id"].clone()),
                "buyer_id",
                "cannot sell to itself",
            ),
            bad(&with(good, "trace_code", json!("12345")), "trace_code", ""),
            bad(&with(good, "batch_no", json!("B 1")), "batch_no", "letters"),
            bad(
                &with(good, "product_id", json!("P-NOPE")),
                "product_id",
                "unknown product",
            ),
        ],
        EventKind::Purchase => vec![
            bad(
                &with(good, "supplier_id", json!("91110000600037341X")),
                "supplier_id",
                "check character",
            ),
            bad(&with(good, "quantity", json!(0)), "quantity", "no movement"),
        ],
        EventKind::Production => vec![bad(
            &with(good, "batch_no", json!("B".repeat(21))),
            "batch_no",
            "letters",
        )],
        EventKind::Inventory => {
            vec![bad(
                &with(good, "quantity", json!(-1)),
                "quantity",
                "negative",
            )]
        }
        EventKind::ProductTest => vec![bad(
            &with(good, "product_id", json!("")),
            "product_id",
            "1–32",
        )],
        EventKind::Inspection => vec![
            bad(
                &with(good, "case_id", json!("JX-1\nforged log line")),
                "case_id",
                "control characters",
            ),
            bad(
                &with(good, "case_id", json!(" JX-1")),
                "case_id",
                "surrounding whitespace",
            ),
            bad(
                &with(good, "flags", json!("sampling_failures,Bad-Flag")),
                "flags",
                "snake_case",
            ),
            bad(
                &with(good, "critical_defects", json!(-1)),
                "critical_defects",
                "negative",
            ),
        ],
    }
}

/// A dead letter as `OUT/dead_letter.ndjson` holds it.
#[derive(serde::Deserialize, Debug)]
struct Dead {
    source: String,
    line: u64,
    field: String,
    reason: String,
}

/// A row of a record file: its bytes, and for a bad one the field and reason words expected.
type Row = (Vec<u8>, Option<(&'static str, &'static str)>);

/// Writes an NDJSON file: the rows in order.
fn write_rows(path: &Path, rows: &[Row]) {
    let mut bytes = Vec::new();
    for (r, _) in rows {
        bytes.extend_from_slice(r);
        bytes.push(b'\n');
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_point_refuses_malformed_input_naming_source_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, day) = province(dir.path());
    let mut failures = Failures::default();
    let mut cases = 0usize;

    // 1. Record files, NDJSON: every kind, good rows between the bad ones.
    let mut inputs = Vec::new();
    let mut expected: Vec<(PathBuf, u64, &'static str, &'static str)> = Vec::new();
    let mut good_rows = 0u64;
    for kind in EventKind::ALL {
        let mut good = first_row(&lake, *kind).await;
        good["event_time"] = json!(format!("{day}T10:00:00+08:00"));
        let has_quantity = good.get("quantity").is_some();
        let mut rows: Vec<Row> = Vec::new();
        let bads: Vec<BadRow> = common_ndjson(&good, has_quantity)
            .into_iter()
            .chain(kind_ndjson(*kind, &good))
            .collect();
        for (i, b) in bads.into_iter().enumerate() {
            let g = with(&good, "event_id", json!(format!("BI-{kind}-good-{i}")));
            rows.push((g.to_string().into_bytes(), None));
            rows.push((b.bytes, Some((b.field, b.reason))));
        }
        good_rows += rows.iter().filter(|(_, e)| e.is_none()).count() as u64;
        let path = dir.path().join(format!("{kind}_feed.ndjson"));
        write_rows(&path, &rows);
        for (i, (_, e)) in rows.iter().enumerate() {
            if let Some((field, reason)) = e {
                expected.push((path.clone(), i as u64 + 1, field, reason));
            }
        }
        inputs.push(path);
    }

    // 2. Record files, CSV: sales with bad cells (the header is line 1).
    let mut sale = first_row(&lake, EventKind::Sales).await;
    sale["event_time"] = json!(format!("{day}T10:00:00+08:00"));
    let header: Vec<&str> = EventKind::Sales.fields().iter().map(|f| f.name).collect();
    let cell = |v: &Value, name: &str| match &v[name] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let csv_row = |v: &Value| {
        header
            .iter()
            .map(|h| cell(v, h))
            .collect::<Vec<_>>()
            .join(",")
    };
    let csv_cases: Vec<(String, &'static str, &'static str)> = vec![
        (
            csv_row(&with(&sale, "quantity", json!("one"))),
            "quantity",
            "invalid",
        ),
        (
            csv_row(&with(
                &sale,
                "event_time",
                json!("2026-13-01T10:00:00+08:00"),
            )),
            "event_time",
            "",
        ),
        (
            csv_row(&with(&sale, "enterprise_id", json!("91110000600037341X"))),
            "enterprise_id",
            "check character",
        ),
        (
            csv_row(&with(&sale, "quantity", json!(-2))),
            "quantity",
            "negative",
        ),
        // Too few cells: the row ends before the quantity.
        (
            header[..4]
                .iter()
                .map(|h| cell(&sale, h))
                .collect::<Vec<_>>()
                .join(","),
            "-",
            "row has 4 fields, the header has 9",
        ),
        // More cells than the header names.
        (format!("{},extra", csv_row(&sale)), "-", "fields"),
        (
            csv_row(&with(&sale, "unit_price", json!("NaN"))),
            "unit_price",
            "",
        ),
    ];
    let csv_path = dir.path().join("sales_extra.csv");
    let mut lines = vec![header.join(",")];
    for (i, (row, field, reason)) in csv_cases.iter().enumerate() {
        lines.push(csv_row(&with(
            &sale,
            "event_id",
            json!(format!("BI-csv-good-{i}")),
        )));
        good_rows += 1;
        lines.push(row.clone());
        expected.push((csv_path.clone(), lines.len() as u64, field, reason));
    }
    std::fs::write(&csv_path, lines.join("\n") + "\n").unwrap();
    inputs.push(csv_path);

    let out = dir.path().join("out");
    let mut args = vec![
        "nightly".to_string(),
        "--lake".into(),
        lake.display().to_string(),
        "--date".into(),
        day.to_string(),
        "--no-model".into(),
        "--no-notices".into(),
        "--quiet".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    for p in &inputs {
        args.push("--input".into());
        args.push(p.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = pharmwatch(&args).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "rows were rejected, the run completed: {}",
        text(&o)
    );
    let dead: Vec<Dead> = std::fs::read_to_string(out.join("dead_letter.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (path, line, field, reason) in &expected {
        cases += 1;
        let src = path.display().to_string();
        let hit = dead.iter().find(|d| d.source == src && d.line == *line);
        failures.check(
            hit.is_some_and(|d| d.field == *field && d.reason.contains(reason)),
            || {
                format!(
                    "{}:{line}: expected field {field} «{reason}», got {hit:?}",
                    path.file_name().unwrap().to_string_lossy()
                )
            },
        );
    }
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let files = run["input_files"].as_array().unwrap();
    for f in files {
        let (read, accepted, rejected) = (
            f["read"].as_u64().unwrap(),
            f["accepted"].as_u64().unwrap(),
            f["rejected"].as_u64().unwrap(),
        );
        assert_eq!(read, accepted + rejected, "{f}");
    }
    let accepted: u64 = files.iter().map(|f| f["accepted"].as_u64().unwrap()).sum();
    let rejected: u64 = files.iter().map(|f| f["rejected"].as_u64().unwrap()).sum();
    assert_eq!(accepted, good_rows, "every good row is accepted: {run}");
    assert_eq!(
        rejected as usize,
        expected.len(),
        "every bad row is rejected"
    );
    assert_eq!(dead.len(), expected.len());

    // A CSV file whose header names an unknown column is refused as a whole (status 1).
    cases += 1;
    let unknown = dir.path().join("sales_unknown.csv");
    std::fs::write(&unknown, format!("{},discount\n", header.join(","))).unwrap();
    let o = pharmwatch(&[
        "nightly",
        "--lake",
        lake.to_str().unwrap(),
        "--date",
        &day.to_string(),
        "--no-model",
        "--no-notices",
        "--quiet",
        "--out",
        dir.path().join("out-unknown").to_str().unwrap(),
        "--input",
        unknown.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    failures.check(
        o.status.code() == Some(1)
            && err.contains("sales_unknown.csv")
            && err.contains("line 1")
            && err.contains("discount"),
        || format!("unknown CSV column: {}", text(&o)),
    );

    cases += findings(dir.path(), &mut failures);
    cases += contacts(dir.path(), &mut failures);
    cases += calendar_years(dir.path(), &mut failures);
    cases += configuration(dir.path(), &mut failures);
    cases += rules_and_roster(dir.path(), &mut failures);
    assert!(cases >= 50, "the corpus has {cases} cases");
    failures.assert_none(cases);
}

/// `measures decide`: every bad finding is named by index, case id, field and reason; the good
/// ones are decided; status 2.
fn findings(dir: &Path, failures: &mut Failures) -> usize {
    let base = json!({
        "case_id": "BI-OK-1",
        "enterprise_id": crate::common::ENTERPRISE,
        "inspection_date": "2026-03-02",
        "conclusion": "pending_rectification",
        "defects": {"critical": 0, "major": 0, "general": 0}
    });
    let set = |id: &str, path: &[&str], v: Value| {
        let mut f = base.clone();
        f["case_id"] = json!(id);
        let mut at = &mut f;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = v;
        f
    };
    let mut missing = base.clone();
    missing["case_id"] = json!("BI-MISSING");
    missing.as_object_mut().unwrap().remove("conclusion");
    let list: Vec<(Value, &str, &str)> = vec![
        (missing, "conclusion", "missing field"),
        (
            set("BI-DATE", &["inspection_date"], json!("2026-02-30")),
            "inspection_date",
            "",
        ),
        (
            set("BI-TYPE", &["defects", "major"], json!("five")),
            "defects.major",
            "invalid type",
        ),
        (
            set("BI-NEG", &["defects", "general"], json!(-1)),
            "defects.general",
            "",
        ),
        (
            set("BI-CONC", &["conclusion"], json!("acceptable")),
            "conclusion",
            "unknown variant",
        ),
        (
            set("BI-CREDIT", &["enterprise_id"], json!("91110000600037341A")),
            "enterprise_id",
            "",
        ),
        (
            set("BI-FLAG", &["flags"], json!(["too_many_snacks"])),
            "flags[0]",
            "unknown flag",
        ),
        (
            set(
                "BI-TWICE",
                &["flags"],
                json!(["sampling_failures", "sampling_failures"]),
            ),
            "flags[1]",
            "",
        ),
        (
            set("BI-NL", &["case_id"], json!("BI-NL\nforged")),
            "case_id",
            "control characters",
        ),
        (
            set("BI-LONG", &["case_id"], json!("X".repeat(65))),
            "case_id",
            "1–64",
        ),
        (json!("not an object"), "", ""),
        (
            set("BI-EXTRA", &["defects", "minor"], json!(1)),
            "defects.minor",
            "unknown field",
        ),
    ];
    let mut all = vec![base.clone()];
    all.extend(list.iter().map(|(v, _, _)| v.clone()));
    let path = dir.join("findings.json");
    std::fs::write(&path, Value::Array(all).to_string()).unwrap();
    let o = pharmwatch(&["measures", "decide", "--findings", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    failures.check(o.status.code() == Some(2), || {
        format!("findings: status 2 expected: {}", text(&o))
    });
    let decided: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
    failures.check(
        decided.len() == 1 && decided[0]["case_id"] == "BI-OK-1",
        || format!("findings: only the good one decided: {}", text(&o)),
    );
    for (i, (_, field, reason)) in list.iter().enumerate() {
        let index = format!("[{}]", i + 1);
        let line = err
            .lines()
            .find(|l| l.contains(&index) && l.starts_with(path.to_str().unwrap()));
        failures.check(
            line.is_some_and(|l| {
                l.contains(&format!("`{field}`")) && l.contains(reason)
                    || field.is_empty() && l.contains("object")
            }),
            || format!("finding {index}: field {field} «{reason}» in\n{err}"),
        );
    }
    // Not an array at all: one refusal of the file.
    let whole = dir.join("findings-object.json");
    std::fs::write(&whole, base.to_string()).unwrap();
    let o = pharmwatch(&["measures", "decide", "--findings", whole.to_str().unwrap()])
        .output()
        .unwrap();
    failures.check(
        o.status.code() == Some(2)
            && String::from_utf8_lossy(&o.stderr).contains("findings-object.json"),
        || format!("findings not an array: {}", text(&o)),
    );
    list.len() + 1
}

/// Contacts: the file is refused at start-up naming the file, the contact's index, the field
/// and the reason (`deliver --dry-run`, status 1).
fn contacts(dir: &Path, failures: &mut Failures) -> usize {
    let ent = crate::common::ENTERPRISE;
    let good = json!({"enterprise_id": ent, "priority": 1, "lead_name": "王经理",
        "channel": "email", "address": "lead@example.invalid"});
    let second = |patch: Value| {
        let mut c = json!({"enterprise_id": ent, "priority": 2, "lead_name": "李主任",
            "channel": "webhook", "address": "http://127.0.0.1:9/hook", "secret_ref": "env:HOOK"});
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        Value::Array(vec![good.clone(), c]).to_string()
    };
    let list: Vec<(String, &str, &str)> = vec![
        (
            second(json!({"channel": "sms"})),
            "[1].channel",
            "unknown variant",
        ),
        (
            second(json!({"address": "ftp://x"})),
            "address",
            "http(s) URL",
        ),
        (
            second(json!({"channel": "email", "address": "no-at-sign"})),
            "address",
            "e-mail",
        ),
        (
            second(json!({"secret_ref": null})),
            "secret_ref",
            "signing secret",
        ),
        (
            second(json!({"secret_ref": "vault:x"})),
            "secret_ref",
            "env:VARIABLE",
        ),
        (
            second(json!({"enterprise_id": "91110000600037341X"})),
            "[1]",
            "check character",
        ),
        (second(json!({"fax": "0471"})), "[1]", "unknown field `fax`"),
        (
            second(json!({"priority": 1})),
            "contacts of",
            "share a priority",
        ),
        (
            "[{\"enterprise_id\": ".to_string(),
            "not a JSON array",
            "line 1",
        ),
        (
            format!("{} []", Value::Array(vec![good.clone()])),
            "not a JSON array",
            "trailing",
        ),
    ];
    for (i, (body, field, reason)) in list.iter().enumerate() {
        let case = dir.join(format!("contacts-{i}"));
        std::fs::create_dir_all(&case).unwrap();
        std::fs::write(case.join("contacts.json"), body).unwrap();
        std::fs::write(
            case.join("pharmwatch.toml"),
            "[delivery]\ncontacts = \"contacts.json\"\n",
        )
        .unwrap();
        let o = pharmwatch(&[
            "deliver",
            "--dry-run",
            "--config",
            case.join("pharmwatch.toml").to_str().unwrap(),
            "--out",
            case.join("out").to_str().unwrap(),
        ])
        .env(
            "PHARMWATCH_LINK_KEY",
            "bad-input-corpus-link-key-0123456789abcdef",
        )
        .env("HOOK", "secret")
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        failures.check(
            o.status.code() == Some(1)
                && err.contains("contacts.json")
                && err.contains(field)
                && err.contains(reason),
            || format!("contacts case {i} ({field} «{reason}»): {}", text(&o)),
        );
    }
    list.len()
}

/// `calendar import`: a bad year file is refused naming the file, the line and the reason
/// (status 1), and nothing is loaded.
fn calendar_years(dir: &Path, failures: &mut Failures) -> usize {
    let good = crate::common::TEST_2027;
    let list: Vec<(String, &str)> = vec![
        (
            good.replace("from = 2027-01-01", "from = 2027-13-01"),
            "line",
        ),
        (
            good.replace("to = 2027-01-03", "to = 2026-12-30"),
            "2026-12-30",
        ),
        (good.replace("name = \"春节\"", "name = \"\""), "name"),
        (format!("{good}\ncolour = \"red\"\n"), "colour"),
        ("year = 2027\n[[holiday\n".to_string(), "line"),
    ];
    for (i, (body, word)) in list.iter().enumerate() {
        let file = dir.join(format!("year-{i}.toml"));
        std::fs::write(&file, body).unwrap();
        let out = dir.join(format!("cal-out-{i}"));
        let o = pharmwatch(&[
            "calendar",
            "--out",
            out.to_str().unwrap(),
            "import",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        failures.check(
            o.status.code() == Some(1)
                && err.contains(&format!("year-{i}.toml"))
                && err.contains(word),
            || format!("calendar year case {i} («{word}»): {}", text(&o)),
        );
    }
    list.len()
}

/// `pharmwatch.toml`: a bad file stops the command at start naming the file, the section and
/// the key (status 1).
fn configuration(dir: &Path, failures: &mut Failures) -> usize {
    let list: Vec<(&str, &str, &[&str])> = vec![
        ("[stream]\nbrokers = \"x\n", "stream", &["line 2, column"]),
        ("[streem]\nbrokers = \"x\"\n", "stream", &["streem"]),
        (
            "[stream]\nbatch_max_record = 10\n",
            "stream",
            &["batch_max_record"],
        ),
        (
            "[stream]\nbatch_max_records = \"many\"\n",
            "stream",
            &["batch_max_records"],
        ),
        (
            "[stream]\nallowed_lateness_secs = -1\n",
            "stream",
            &["[stream]", "allowed_lateness_secs"],
        ),
        (
            "[stream]\nclose_grace_ms = 700000\n",
            "stream",
            &["[stream]", "close_grace_ms"],
        ),
        (
            "[stream]\nbatch_max_records = 0\n",
            "stream",
            &["batch_max_records"],
        ),
        (
            "[delivery]\ncontacts = \"c.json\"\nlink_ttl_days = 0\n",
            "delivery",
            &["link_ttl_days"],
        ),
        (
            "[delivery]\ncontacts = \"c.json\"\nlink_key_id = \"a/b\"\n",
            "delivery",
            &["link_key_id", "a/b"],
        ),
        (
            "[delivery]\ncontacts = \"c.json\"\njitter = 1.5\n",
            "delivery",
            &["jitter"],
        ),
    ];
    for (i, (body, section, words)) in list.iter().enumerate() {
        let case = dir.join(format!("config-{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let file = case.join("pharmwatch.toml");
        std::fs::write(&file, body).unwrap();
        let args: Vec<&str> = if *section == "stream" {
            vec!["stream", "--config", file.to_str().unwrap()]
        } else {
            vec![
                "deliver",
                "--dry-run",
                "--config",
                file.to_str().unwrap(),
                "--out",
                case.to_str().unwrap(),
            ]
        };
        let o = pharmwatch(&args)
            .env(
                "PHARMWATCH_LINK_KEY",
                "bad-input-corpus-link-key-0123456789abcdef",
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        failures.check(
            o.status.code() == Some(1)
                && err.contains("pharmwatch.toml")
                && words.iter().all(|w| err.contains(w)),
            || format!("configuration case {i} ({words:?}): {}", text(&o)),
        );
    }
    list.len()
}

/// The measures rules and the inspector roster: refused naming the file and the key or line.
fn rules_and_roster(dir: &Path, failures: &mut Failures) -> usize {
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[ladder]\nfirst_minor = \"caution\"\nunknown_key = 1\n",
    )
    .unwrap();
    let findings = dir.join("one-finding.json");
    std::fs::write(&findings, crate::common::caution_finding("BI-RULES")).unwrap();
    let o = pharmwatch(&[
        "measures",
        "decide",
        "--rules",
        rules.to_str().unwrap(),
        "--findings",
        findings.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    failures.check(
        o.status.code() == Some(1) && err.contains("rules.toml"),
        || format!("rules: {}", text(&o)),
    );
    let roster = dir.join("inspectors.csv");
    std::fs::write(
        &roster,
        "inspector_id,name,region_code\nI-1,张三,150100\n,李四,150200\n",
    )
    .unwrap();
    let lake = dir.join("lake");
    let o = pharmwatch(&[
        "inspect",
        "plan",
        "--period",
        "2026-Q2",
        "--seed",
        "1",
        "--lake",
        lake.to_str().unwrap(),
        "--inspectors",
        roster.to_str().unwrap(),
        "--out",
        dir.join("plan-out").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    failures.check(
        o.status.code() == Some(1) && err.contains("inspectors.csv:3"),
        || format!("roster: {}", text(&o)),
    );
    2
}
