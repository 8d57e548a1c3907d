//! Crashes at the named fault points of the nightly closed loop and of the migration runner
//! (`pharmwatch_core::faults`: the process aborts there, as under `kill -9`), then the same
//! command again without the fault: the store and the files end exactly as one clean run
//! leaves them. The stream's points are crashed in `stream.rs`, the delivery worker's in
//! `delivery.rs`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use pharmwatch::faults::FAULT_ENV;

fn pharmwatch(args: &[&str], fault: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pharmwatch"));
    c.args(args);
    if let Some(f) = fault {
        c.env(FAULT_ENV, f);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that `o` is the abort of fault point `fault` (`NAME@N`).
fn assert_crashed_at(o: &Output, fault: &str) {
    let (point, nth) = fault.split_once('@').unwrap();
    assert_eq!(
        o.status.signal(),
        Some(6),
        "{fault}: {:?}\n{}",
        o.status,
        text(o)
    );
    assert!(
        text(o).contains(&format!("fault point {point} hit {nth}: aborting")),
        "{fault}: {}",
        text(o)
    );
}

/// What the closed loop leaves in a store and under `notices/`, free of run times: the
/// documents (number, kind, case), the cases (id, status, first-minor mark, region), the
/// case events and audit lines by kind, the queued deliveries, and the file names. Each file
/// is checked against the stored text it was written from.
fn closed_loop_state(out: &Path) -> BTreeMap<String, Vec<String>> {
    let db = rusqlite::Connection::open(out.join("pharmwatch.db")).unwrap();
    let rows = |sql: &str| -> Vec<String> {
        let mut st = db.prepare(sql).unwrap();
        let cols = st.column_count();
        st.query_map([], |r| {
            Ok((0..cols)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i)
                        .map(|v| format!("{v:?}"))
                        .unwrap()
                })
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let mut state = BTreeMap::new();
    state.insert(
        "documents".into(),
        rows("SELECT number, kind, case_id, issued_on FROM documents ORDER BY series, year, seq"),
    );
    state.insert(
        "cases".into(),
        rows(
            "SELECT case_id, status, first_minor, region_code, opened_on FROM cases
             ORDER BY case_id",
        ),
    );
    state.insert(
        "events".into(),
        rows(
            "SELECT case_id, event, document_no, COUNT(*) FROM case_events
             GROUP BY case_id, event, document_no ORDER BY 1, 2, 3",
        ),
    );
    state.insert(
        "audit".into(),
        rows("SELECT action, target, COUNT(*) FROM audit_trail GROUP BY action, target ORDER BY 1, 2"),
    );
    state.insert(
        "deliveries".into(),
        rows("SELECT document_no, enterprise_id, status FROM deliveries ORDER BY document_no"),
    );
    // Every document has both files, whole, with the stored text; nothing else lies there.
    let mut st = db
        .prepare("SELECT kind, year, seq, case_id, html, markdown FROM documents")
        .unwrap();
    let stored: Vec<(String, i64, i64, String, String, String)> = st
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let dir = out.join("notices");
    for (kind, year, seq, case, html, md) in &stored {
        let stem = format!("{kind}_{year}_{seq:04}_{case}");
        let h = std::fs::read_to_string(dir.join(format!("{stem}.html")))
            .unwrap_or_else(|e| panic!("{stem}.html: {e}"));
        let m = std::fs::read_to_string(dir.join(format!("{stem}.md")))
            .unwrap_or_else(|e| panic!("{stem}.md: {e}"));
        assert_eq!(&h, html, "{stem}.html differs from the stored text");
        assert_eq!(&m, md, "{stem}.md differs from the stored text");
    }
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    assert_eq!(files.len(), 2 * stored.len(), "{files:?}");
    state.insert("files".into(), files);
    state
}

/// The night of 2026-11-25 with documents issued directly (three risk-list rows: one C, two
/// B), crashed at each fault point of issuing — after rendering (inside the numbering
/// transaction), after numbering (the number taken, no file yet), after the files — and run
/// again: the same documents with the same numbers and no gap, their files, one opening per
/// case and one delivery per document, as after one clean night.
#[test]
fn a_night_crashed_while_issuing_and_run_again_leaves_what_one_clean_night_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let lake = p("lake");
    let sim = pharmwatch(&crate::common::autumn_province_args(&lake), None);
    assert!(sim.status.success(), "{}", text(&sim));
    let config = p("pharmwatch.toml");
    std::fs::write(&config, crate::common::DIRECT_NOTICES_TOML).unwrap();
    let night = |out: &str, fault: Option<&str>| {
        pharmwatch(
            &[
                "nightly",
                "--lake",
                &lake,
                "--date",
                "2026-11-25",
                "--no-model",
                "--quiet",
                "--config",
                &config,
                "--out",
                out,
            ],
            fault,
        )
    };
    let clean_out = p("clean");
    let clean = night(&clean_out, None);
    assert!(clean.status.success(), "{}", text(&clean));
    let expected = closed_loop_state(Path::new(&clean_out));
    let documents = expected["documents"].len();
    assert!(documents >= 3, "{expected:?}");

    for fault in [
        // The first case is open, its first document rendered, the transaction not committed.
        "closed_loop.after_rendering@1",
        // The second document numbered and stored, its files not written.
        "closed_loop.after_numbering@2",
        "closed_loop.after_files@1",
    ] {
        let out = p(&fault.replace(['.', '@'], "-"));
        let crashed = night(&out, Some(fault));
        assert_crashed_at(&crashed, fault);
        let again = night(&out, None);
        assert!(again.status.success(), "{fault}: {}", text(&again));
        let restored = fault.starts_with("closed_loop.after_numbering");
        assert_eq!(
            text(&again).contains("numbered by an interrupted run had no files"),
            restored,
            "{fault}: {}",
            text(&again)
        );
        let got = closed_loop_state(Path::new(&out));
        for (what, rows) in &expected {
            assert_eq!(
                &got[what], rows,
                "{fault}: {what} differ from a clean night"
            );
        }
    }
}

/// The migration runner crashed after its fifth step, on SQLite and on PostgreSQL: the store
/// holds nothing of the migrations (they run in one transaction), and the next start applies
/// them all.
#[test]
fn a_migration_crashed_half_way_leaves_nothing_and_the_next_start_applies_all() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_out = dir.path().join("out");
    let pg = pharmwatch_core::db::scratch_postgres(&dir.path().join("pg"));
    for (store, all) in [
        (
            pharmwatch::store::location(&sqlite_out),
            pharmwatch::store::MIGRATIONS.len(),
        ),
        (pg.clone(), pharmwatch::store::PG_MIGRATIONS.len()),
    ] {
        let url = store.to_string_lossy().into_owned();
        let migrate = |fault: Option<&str>| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_pharmwatch"));
            c.args(["migrate", "--out", sqlite_out.to_str().unwrap()]);
            if pharmwatch_core::db::is_postgres(&store) {
                c.env("PHARMWATCH__STORE__URL", &url);
            }
            if let Some(f) = fault {
                c.env(FAULT_ENV, f);
            }
            c.output().unwrap()
        };
        let fault = "migrate.after_step@5";
        let crashed = migrate(Some(fault));
        assert_crashed_at(&crashed, fault);
        let conn = pharmwatch_core::db::Conn::open_read_only(&store).unwrap();
        let count = |table: &str| {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
        };
        for table in ["schema_migrations", "cases", "documents", "outbox"] {
            assert_eq!(count(table), None, "{url}: {table} exists after the crash");
        }
        drop(conn);
        let again = migrate(None);
        assert!(again.status.success(), "{url}: {}", text(&again));
        assert!(
            text(&again).contains(&format!("{all} migration(s) applied now, {all} in all")),
            "{url}: {}",
            text(&again)
        );
    }
}
