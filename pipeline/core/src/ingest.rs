//! Files in: CSV or NDJSON files of any event kind, decoded, validated against the wire
//! contract and the reference data, and turned into lake-shaped Arrow batches.
//!
//! Policy: a malformed row never stops the run. It goes to the dead letter with its file, line,
//! field and reason, and the raw text; every accepted row is kept. For every file,
//! `read = accepted + rejected`.
//!
//! The kind of a file is given as `KIND=PATH` or guessed from the file name's first word
//! (`sales_2026-10.csv` → sales); the format from the extension (`.csv`, `.ndjson`, `.jsonl`,
//! `.json` with one object per line).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;

use pharmwatch_schemas::{
    EventKind, InspectionFinding, InventorySnapshot, ProductTestRecord, ProductionRecord,
    PurchaseRecord, SalesRecord, Validate, biz_date,
};

use crate::error::{CoreError, Result};
use crate::lake::records_to_batch;

/// An input file and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// Event kind of every row.
    pub kind: EventKind,
    /// The file.
    pub path: PathBuf,
}

impl InputSpec {
    /// Parses `KIND=PATH` or `PATH` (kind from the file name).
    pub fn parse(arg: &str) -> Result<Self> {
        if let Some((k, p)) = arg.split_once('=')
            && let Some(kind) = EventKind::parse(k)
        {
            return Ok(Self {
                kind,
                path: PathBuf::from(p),
            });
        }
        let path = PathBuf::from(arg);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let kind = EventKind::from_file_name(&name).ok_or_else(|| {
            CoreError::Config(format!(
                "--input {arg}: cannot tell the event kind from the file name; write KIND=PATH with KIND one of {}",
                EventKind::NAMES.join(", ")
            ))
        })?;
        Ok(Self { kind, path })
    }
}

/// A rejected record.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Where it came from (file path).
    pub source: String,
    /// Line number in the file (1-based; for CSV the header is line 1).
    pub line: u64,
    /// Event kind the file was read as.
    pub kind: String,
    /// The offending field, or `-` when the row as a whole is unreadable.
    pub field: String,
    /// Why it was rejected.
    pub reason: String,
    /// The raw row.
    pub raw: String,
}

/// Counts for one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    /// The file.
    pub source: String,
    /// Event kind.
    pub kind: String,
    /// Rows read.
    pub read: u64,
    /// Rows accepted.
    pub accepted: u64,
    /// Rows rejected (in the dead letter).
    pub rejected: u64,
}

/// Reference facts that records are checked against.
#[derive(Debug, Clone, Default)]
pub struct ReferenceSets {
    /// Known enterprise credit codes.
    pub enterprises: crate::fasthash::FastSet<String>,
    /// Known product ids.
    pub products: crate::fasthash::FastSet<String>,
}

/// The accepted business-day range of a run.
#[derive(Debug, Clone, Copy)]
pub struct DateRange {
    /// Earliest accepted business day.
    pub earliest: NaiveDate,
    /// Latest accepted business day.
    pub latest: NaiveDate,
}

/// Everything read from the input files.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Accepted rows per kind, as lake batches.
    pub batches: Vec<(EventKind, RecordBatch)>,
    /// Rejected rows.
    pub dead_letters: Vec<DeadLetter>,
    /// Per-file counts.
    pub files: Vec<FileCounts>,
}

/// Reads every input file.
pub fn ingest_all(
    inputs: &[InputSpec],
    refs: &ReferenceSets,
    range: DateRange,
) -> Result<Ingested> {
    let mut out = Ingested::default();
    for spec in inputs {
        let (batch, counts) = match spec.kind {
            EventKind::Production => {
                ingest_file::<ProductionRecord>(spec, refs, range, &mut out.dead_letters)?
            }
            EventKind::Sales => {
                ingest_file::<SalesRecord>(spec, refs, range, &mut out.dead_letters)?
            }
            EventKind::Purchase => {
                ingest_file::<PurchaseRecord>(spec, refs, range, &mut out.dead_letters)?
            }
            EventKind::Inventory => {
                ingest_file::<InventorySnapshot>(spec, refs, range, &mut out.dead_letters)?
            }
            EventKind::ProductTest => {
                ingest_file::<ProductTestRecord>(spec, refs, range, &mut out.dead_letters)?
            }
            EventKind::Inspection => {
                ingest_file::<InspectionFinding>(spec, refs, range, &mut out.dead_letters)?
            }
        };
        out.batches.push((spec.kind, batch));
        out.files.push(counts);
    }
    Ok(out)
}

enum Format {
    Csv,
    Ndjson,
}

fn format_of(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => Ok(Format::Csv),
        "ndjson" | "jsonl" | "json" => Ok(Format::Ndjson),
        _ => Err(CoreError::Config(format!(
            "{}: unknown input format (use .csv, .ndjson, .jsonl or .json with one object per line)",
            path.display()
        ))),
    }
}

/// Checks a decoded record against the contract, the reference data and (if given) the date
/// range; the error is the offending field and the reason.
pub fn check<T: Validate>(
    rec: &T,
    refs: &ReferenceSets,
    range: Option<DateRange>,
) -> std::result::Result<(), (String, String)> {
    rec.validate()
        .map_err(|e| (e.field.to_string(), e.reason))?;
    if !refs.enterprises.is_empty() && !refs.enterprises.contains(rec.enterprise_id()) {
        return Err((
            "enterprise_id".into(),
            format!(
                "unknown enterprise {} (not in the enterprise register)",
                rec.enterprise_id()
            ),
        ));
    }
    if let Some(p) = rec.product_id()
        && !refs.products.contains(p)
    {
        return Err(("product_id".into(), format!("unknown product {p}")));
    }
    let Some(range) = range else {
        return Ok(());
    };
    let day = biz_date(rec.event_time());
    if day < range.earliest || day > range.latest {
        return Err((
            "event_time".into(),
            format!(
                "date out of range: business day {day} is outside the run's accepted range {} … {}",
                range.earliest, range.latest
            ),
        ));
    }
    Ok(())
}

fn ingest_file<T>(
    spec: &InputSpec,
    refs: &ReferenceSets,
    range: DateRange,
    dead: &mut Vec<DeadLetter>,
) -> Result<(RecordBatch, FileCounts)>
where
    T: DeserializeOwned + Serialize + Validate,
{
    let source = spec.path.display().to_string();
    let kind = spec.kind.as_str().to_string();
    let mut file = FileReader {
        counts: FileCounts {
            source: source.clone(),
            kind: kind.clone(),
            ..FileCounts::default()
        },
        accepted: Vec::<T>::new(),
        dead,
        source,
        kind,
        refs,
        range,
    };
    match format_of(&spec.path)? {
        Format::Ndjson => file.read_ndjson(spec)?,
        Format::Csv => file.read_csv(spec)?,
    }
    let batch = records_to_batch(spec.kind, &file.accepted)?;
    Ok((batch, file.counts))
}

/// One input file being read: its counts, the accepted records, and the dead letter its
/// rejects go to (`read = accepted + rejected` for every row read).
struct FileReader<'a, T> {
    counts: FileCounts,
    accepted: Vec<T>,
    dead: &'a mut Vec<DeadLetter>,
    source: String,
    kind: String,
    refs: &'a ReferenceSets,
    range: DateRange,
}

impl<T: DeserializeOwned + Serialize + Validate> FileReader<'_, T> {
    /// A row refused: counted and put in the dead letter with its line, field and reason.
    fn reject(&mut self, line: u64, field: String, reason: String, raw: String) {
        self.counts.rejected += 1;
        self.dead.push(DeadLetter {
            source: self.source.clone(),
            line,
            kind: self.kind.clone(),
            field,
            reason,
            raw,
        });
    }

    /// A decoded row: accepted when it passes the checks (identifiers, references, range).
    fn offer(&mut self, line: u64, rec: T, raw: String) {
        match check(&rec, self.refs, Some(self.range)) {
            Ok(()) => {
                self.counts.accepted += 1;
                self.accepted.push(rec);
            }
            Err((field, reason)) => self.reject(line, field, reason, raw),
        }
    }

    /// Reads an NDJSON file: one JSON object per line, blank lines skipped.
    fn read_ndjson(&mut self, spec: &InputSpec) -> Result<()> {
        let file = std::fs::File::open(&spec.path).map_err(|e| CoreError::io(&spec.path, e))?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = match line {
                Ok(l) => l,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.counts.read += 1;
                    self.reject(
                        line_no,
                        "-".into(),
                        "line is not valid UTF-8".into(),
                        String::new(),
                    );
                    continue;
                }
                Err(e) => return Err(CoreError::io(&spec.path, e)),
            };
            if line.trim().is_empty() {
                continue;
            }
            self.counts.read += 1;
            if let Some((field, reason)) = not_an_object(line.as_bytes()) {
                self.reject(line_no, field, reason, line);
                continue;
            }
            let mut de = serde_json::Deserializer::from_str(&line);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                // One object per line: anything after it is refused, as the stream does.
                Ok(rec) => match de.end() {
                    Ok(()) => self.offer(line_no, rec, line),
                    Err(e) => self.reject(line_no, "-".into(), format!("invalid JSON: {e}"), line),
                },
                Err(e) => {
                    let path = e.path().to_string();
                    let (field, reason) = json_refusal(path, &e.into_inner());
                    self.reject(line_no, field, reason, line);
                }
            }
        }
        Ok(())
    }

    /// Reads a CSV file with a header of the kind's fields; an unknown column refuses the file.
    fn read_csv(&mut self, spec: &InputSpec) -> Result<()> {
        let csv_err = |e| CoreError::Csv {
            path: spec.path.clone(),
            source: e,
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&spec.path)
            .map_err(csv_err)?;
        let headers = reader.headers().map_err(csv_err)?.clone();
        let known: HashSet<&str> = spec.kind.fields().iter().map(|f| f.name).collect();
        if let Some(unknown) = headers.iter().find(|h| !known.contains(h)) {
            return Err(CoreError::Config(format!(
                "{}: line 1: unknown column {unknown:?} for kind {} (expected {})",
                spec.path.display(),
                spec.kind,
                spec.kind
                    .fields()
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        let mut record = csv::StringRecord::new();
        loop {
            let line_no = reader.position().line();
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    self.counts.read += 1;
                    let line_no = record.position().map(|p| p.line()).unwrap_or(line_no);
                    let raw = record.iter().collect::<Vec<_>>().join(",");
                    if record.len() != headers.len() {
                        let reason = format!(
                            "row has {} fields, the header has {}",
                            record.len(),
                            headers.len()
                        );
                        self.reject(line_no, "-".into(), reason, raw);
                        continue;
                    }
                    match record.deserialize::<T>(Some(&headers)) {
                        Ok(rec) => self.offer(line_no, rec, raw),
                        Err(e) => {
                            let (field, reason) = csv_error_field(&e, &headers, &record, spec.kind);
                            self.reject(line_no, field, reason, raw);
                        }
                    }
                }
                Err(e) => {
                    self.counts.read += 1;
                    self.reject(
                        line_no,
                        "-".into(),
                        format!("unreadable CSV row: {e}"),
                        String::new(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// The field and reason of a CSV row the decoder refused. The decoder names the column of a
/// number or a missing field; a value it hands on to another parser (an instant, a date) comes
/// back without its column, which is then found by parsing the row's instants and dates.
fn csv_error_field(
    e: &csv::Error,
    headers: &csv::StringRecord,
    record: &csv::StringRecord,
    kind: EventKind,
) -> (String, String) {
    if let csv::ErrorKind::Deserialize { err, .. } = e.kind() {
        let reason = err.kind().to_string();
        let field = err
            .field()
            .and_then(|i| headers.get(i as usize))
            .map(str::to_string)
            .or_else(|| missing_field(&reason))
            .or_else(|| unparsable_time(headers, record, kind))
            .unwrap_or_else(|| "-".to_string());
        return (field, reason);
    }
    ("-".to_string(), e.to_string())
}

/// The first column of `kind` typed as an instant or a date whose cell does not parse.
fn unparsable_time(
    headers: &csv::StringRecord,
    record: &csv::StringRecord,
    kind: EventKind,
) -> Option<String> {
    use pharmwatch_schemas::records::FieldType;
    headers.iter().zip(record.iter()).find_map(|(h, cell)| {
        let spec = kind.fields().iter().find(|f| f.name == h)?;
        let bad = match spec.ty {
            FieldType::Timestamp => chrono::DateTime::parse_from_rfc3339(cell).is_err(),
            FieldType::Date => cell.parse::<chrono::NaiveDate>().is_err(),
            _ => false,
        };
        (bad && !(cell.is_empty() && spec.nullable)).then(|| h.to_string())
    })
}

/// The name in a decoder's "missing field `name`" message.
fn missing_field(reason: &str) -> Option<String> {
    reason
        .find("missing field `")
        .map(|i| &reason[i + "missing field `".len()..])
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
}

/// Refuses what is not one JSON object `{…}` (a message or an NDJSON line is one record): an
/// array, which a derived decoder would read field by field in order, an empty text, any other
/// value. `None` for an object (its fields are checked by the decoder).
pub fn not_an_object(bytes: &[u8]) -> Option<(String, String)> {
    let why = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => return None,
        Some(b'[') => "a JSON array, not an object: a record is one object `{…}`",
        None => "an empty message",
        Some(_) => "invalid JSON: a record is one JSON object `{…}`",
    };
    Some(("-".into(), why.into()))
}

/// The field and reason of a record that did not decode, from the decoder's error and the JSON
/// path it stopped at: a missing field is named (`missing field `quantity`` → `quantity`), a
/// number beyond a 64-bit float is said so, anything else that is not JSON is "invalid JSON",
/// the rest names its path (`-` for the record as a whole).
pub fn json_refusal(path: String, inner: &serde_json::Error) -> (String, String) {
    let text = inner.to_string();
    if text.starts_with("number out of range") {
        return (
            if path == "." { "-".into() } else { path },
            format!("a number out of range (beyond a 64-bit float): {text}"),
        );
    }
    if inner.is_syntax() || inner.is_eof() {
        return ("-".to_string(), format!("invalid JSON: {text}"));
    }
    if let Some(name) = missing_field(&text) {
        let field = if path == "." {
            name
        } else {
            format!("{path}.{name}")
        };
        return (field, text);
    }
    if path == "." {
        ("-".to_string(), text)
    } else {
        (path, text)
    }
}

/// Writes dead letters as NDJSON.
pub fn write_dead_letters(path: &Path, dead: &[DeadLetter]) -> Result<()> {
    let mut text = String::new();
    for d in dead {
        text.push_str(&serde_json::to_string(d).map_err(|e| CoreError::Internal(e.to_string()))?);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| CoreError::io(path, e))
}

/// The accepted range for a run over `[from, to]`.
pub fn run_range(from: NaiveDate, to: NaiveDate, lookback_days: i64) -> DateRange {
    DateRange {
        earliest: from - Duration::days(lookback_days),
        latest: to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_spec_reads_kind_prefix_or_file_name() {
        let s = InputSpec::parse("sales=/tmp/x.csv").unwrap();
        assert_eq!(s.kind, EventKind::Sales);
        let s = InputSpec::parse("/data/product_test_oct.ndjson").unwrap();
        assert_eq!(s.kind, EventKind::ProductTest);
        let err = InputSpec::parse("/data/orders.csv").unwrap_err();
        assert!(err.to_string().contains("KIND=PATH"));
    }

    #[test]
    fn a_record_is_one_object_and_a_refusal_names_its_field() {
        assert!(not_an_object(b"  {\"a\":1}").is_none());
        for (bytes, word) in [
            (&b"[1,2]"[..], "JSON array"),
            (&b"   "[..], "empty"),
            (&b"\"text\""[..], "invalid JSON"),
        ] {
            let (field, reason) = not_an_object(bytes).unwrap();
            assert_eq!(field, "-");
            assert!(reason.contains(word), "{reason}");
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct R {
            quantity: i64,
            inner: Inner,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            code: String,
        }
        let refuse = |text: &str| {
            let mut de = serde_json::Deserializer::from_str(text);
            let e = serde_path_to_error::deserialize::<_, R>(&mut de).unwrap_err();
            let path = e.path().to_string();
            json_refusal(path, &e.into_inner())
        };
        assert_eq!(refuse(r#"{"inner":{"code":"x"}}"#).0, "quantity");
        assert_eq!(refuse(r#"{"quantity":1,"inner":{}}"#).0, "inner.code");
        let (field, reason) = refuse(r#"{"quantity":1e999,"inner":{"code":"x"}}"#);
        assert!(reason.contains("out of range"), "{field}: {reason}");
        let (field, reason) = refuse(r#"{"quantity":"#);
        assert_eq!(field, "-");
        assert!(reason.contains("invalid JSON"), "{reason}");
        assert_eq!(
            refuse(r#"{"quantity":"five","inner":{"code":"x"}}"#).0,
            "quantity"
        );
    }

    mod properties {
        //! Random bytes and near-valid records through the file decoders (NDJSON and CSV, every
        //! kind): no panic, every line is either accepted or rejected with its line, a field
        //! and a reason, and the counts reconcile.

        use super::*;
        use proptest::prelude::*;

        const ENT: &str = "91110000600037341L";

        fn refs() -> ReferenceSets {
            let mut r = ReferenceSets::default();
            r.enterprises.insert(ENT.to_string());
            r.products.insert("P1".to_string());
            r
        }

        fn range() -> DateRange {
            DateRange {
                earliest: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
                latest: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
            }
        }

        fn valid_sale() -> serde_json::Value {
            serde_json::json!({"event_id": "s1", "event_time": "2026-03-02T10:00:00+08:00",
                "enterprise_id": ENT, "product_id": "P1", "batch_no": "B1", "quantity": 2,
                "unit_price": 10.0, "buyer_id": null, "trace_code": null})
        }

        /// Reads `text` as an input file of `kind` named `name`; checks the invariants.
        fn read_and_check(kind: EventKind, name: &str, text: &[u8]) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let spec = InputSpec { kind, path };
            match ingest_all(std::slice::from_ref(&spec), &refs(), range()) {
                Ok(out) => {
                    let f = &out.files[0];
                    assert_eq!(f.read, f.accepted + f.rejected, "{f:?}");
                    assert_eq!(out.dead_letters.len() as u64, f.rejected);
                    for d in &out.dead_letters {
                        assert!(d.line >= 1, "{d:?}");
                        assert!(!d.field.is_empty() && !d.reason.is_empty(), "{d:?}");
                    }
                }
                // A file refused as a whole (a CSV header naming an unknown column) says why.
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }

        fn kinds() -> impl Strategy<Value = EventKind> {
            proptest::sample::select(EventKind::ALL.to_vec())
        }

        /// A valid sale with one field replaced by a random JSON value, removed, or one added.
        fn near_valid() -> impl Strategy<Value = String> {
            let fields: Vec<&str> = EventKind::Sales.fields().iter().map(|f| f.name).collect();
            let value = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::json!(f)),
                ".{0,40}".prop_map(serde_json::Value::from),
                Just(serde_json::json!([1, "a"])),
                Just(serde_json::json!({"a": 1})),
            ];
            (proptest::sample::select(fields), value, 0..3u8).prop_map(|(field, v, op)| {
                let mut s = valid_sale();
                let o = s.as_object_mut().unwrap();
                match op {
                    0 => {
                        o.insert(field.to_string(), v);
                    }
                    1 => {
                        o.remove(field);
                    }
                    _ => {
                        o.insert(format!("x_{field}"), v);
                    }
                }
                s.to_string()
            })
        }

        #[test]
        fn the_unchanged_record_is_accepted() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sales.ndjson");
            std::fs::write(&path, valid_sale().to_string()).unwrap();
            let spec = InputSpec {
                kind: EventKind::Sales,
                path,
            };
            let out = ingest_all(&[spec], &refs(), range()).unwrap();
            assert_eq!((out.files[0].accepted, out.files[0].rejected), (1, 0));
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn random_bytes_never_break_the_ndjson_reader(kind in kinds(),
                lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..6)) {
                let text = lines.join(&b'\n');
                read_and_check(kind, "feed.ndjson", &text);
            }

            #[test]
            fn random_bytes_never_break_the_csv_reader(kind in kinds(),
                lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..6)) {
                let header: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
                let mut text = header.join(",").into_bytes();
                for l in lines {
                    text.push(b'\n');
                    text.extend(l);
                }
                read_and_check(kind, "feed.csv", &text);
            }

            #[test]
            fn near_valid_records_are_accepted_or_refused_with_a_field(rows in proptest::collection::vec(near_valid(), 1..5)) {
                read_and_check(EventKind::Sales, "sales.ndjson", rows.join("\n").as_bytes());
            }
        }
    }
}
