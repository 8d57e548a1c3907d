//! Case ledger: append-only events, the closed loop through the CLI functions, escalation after a
//! missed deadline, and gap-free document numbers under concurrent issue.

use crate::common::{
    ENTERPRISE, TEST_2027, caution_finding, caution_finding_on, d, decide_and_record,
    test_authority,
};
use pharmwatch_casework::ledger::{Ledger, RecordedEvent};
use pharmwatch_casework::measures;
use pharmwatch_casework::notices::{self, DocumentKind};
use pharmwatch_regulation::Calendar;
use pharmwatch_regulation::CalendarYear;

#[test]
fn events_are_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = decide_and_record(dir.path(), &caution_finding("C-1"), d("2026-03-02"));
    drop(ledger);
    let conn =
        pharmwatch_core::db::Conn::open(&pharmwatch_core::db::scratch_store(dir.path())).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM case_events", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 2);
    let upd = conn
        .execute("UPDATE case_events SET actor = 'someone else'", [])
        .unwrap_err();
    assert!(upd.to_string().contains("append-only"), "{upd}");
    let del = conn.execute("DELETE FROM case_events", []).unwrap_err();
    assert!(del.to_string().contains("append-only"), "{del}");
    let after: i64 = conn
        .query_row("SELECT COUNT(*) FROM case_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, n);
}

#[test]
fn a_notice_served_by_hand_leaves_the_manual_service_list_and_the_audit_trail_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = decide_and_record(dir.path(), &caution_finding("C-M"), d("2026-03-02"));
    let rules = measures::load_rules(None).unwrap();
    let (doc, _) = notices::issue(
        &mut ledger,
        "C-M",
        DocumentKind::CautionNotice,
        d("2026-03-02"),
        "王五",
        &test_authority(),
        &rules,
        None,
    )
    .unwrap();
    // Every channel failed: the notice is on the manual-service list.
    ledger
        .conn()
        .execute(
            "UPDATE deliveries SET status = 'failed', failed_at = '2026-03-03T10:00:00Z'
             WHERE document_no = ?1",
            [&doc.number],
        )
        .unwrap();
    let store = pharmwatch_core::store::Store::open(ledger.path()).unwrap();
    assert_eq!(
        pharmwatch_casework::service::manual_list(&store)
            .unwrap()
            .len(),
        1
    );
    // The supervisor's desk serves it by hand and records it: it leaves the list.
    ledger
        .record(
            "C-M",
            RecordedEvent::Delivered,
            "赵六",
            "直接送达，负责人签收",
            d("2026-03-04"),
            false,
        )
        .unwrap();
    assert!(
        pharmwatch_casework::service::manual_list(&store)
            .unwrap()
            .is_empty()
    );
    // The audit trail refuses edits and deletions, like the case events.
    let conn =
        pharmwatch_core::db::Conn::open(&pharmwatch_core::db::scratch_store(dir.path())).unwrap();
    conn.execute(
        "INSERT INTO audit_trail (at, actor, role, action) VALUES ('t', 'a', 'r', 'x')",
        [],
    )
    .unwrap();
    let upd = conn
        .execute("UPDATE audit_trail SET actor = 'b'", [])
        .unwrap_err();
    assert!(upd.to_string().contains("append-only"), "{upd}");
    let del = conn.execute("DELETE FROM audit_trail", []).unwrap_err();
    assert!(del.to_string().contains("append-only"), "{del}");
}

#[test]
fn case_lifecycle_report_verified_closed_then_low_risk() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = decide_and_record(dir.path(), &caution_finding("C-2"), d("2026-03-02"));
    let open = ledger.list(true, Some(ENTERPRISE)).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].next_due.as_deref(), Some("2026-04-14"));

    // Verifying before any report is refused, and nothing is appended.
    let before = ledger.show("C-2").unwrap().events.len();
    let err = ledger
        .record(
            "C-2",
            RecordedEvent::Verified,
            "李四",
            "",
            d("2026-04-01"),
            true,
        )
        .unwrap_err();
    assert!(err.to_string().contains("report"), "{err}");
    assert_eq!(ledger.show("C-2").unwrap().events.len(), before);

    ledger
        .record(
            "C-2",
            RecordedEvent::ReportReceived,
            "张三",
            "整改报告",
            d("2026-04-10"),
            false,
        )
        .unwrap();
    ledger
        .record(
            "C-2",
            RecordedEvent::Verified,
            "李四",
            "",
            d("2026-04-13"),
            true,
        )
        .unwrap();
    let shown = ledger.show("C-2").unwrap();
    assert_eq!(shown.case.status, "closed");
    assert_eq!(shown.case.closed_on.as_deref(), Some("2026-04-13"));
    assert!(shown.measures.iter().all(|m| m.state == "done"));
    let events: Vec<&str> = shown.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "opened",
            "measures_decided",
            "report_received",
            "verified",
            "closed"
        ]
    );
    assert_eq!(shown.events[2].actor, "张三");
    assert!(ledger.list(true, None).unwrap().is_empty());

    // A closed case takes no more events.
    assert!(
        ledger
            .record(
                "C-2",
                RecordedEvent::ReportReceived,
                "张三",
                "",
                d("2026-04-20"),
                false
            )
            .is_err()
    );

    // The sweep puts the verified, committed enterprise on the low-risk list, once.
    let rules = measures::load_rules(None).unwrap();
    let cal = measures::load_calendar(None).unwrap();
    let s = ledger
        .sweep(d("2026-04-14"), &rules, &cal, "nightly")
        .unwrap();
    assert_eq!(s.low_risk, 1);
    let s = ledger
        .sweep(d("2026-04-15"), &rules, &cal, "nightly")
        .unwrap();
    assert_eq!(s.low_risk, 0);
    let lists = ledger.list_entries(None).unwrap();
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].list_name, "low_risk");
    assert_eq!(lists[0].enterprise_id, ENTERPRISE);
}

#[test]
fn missed_deadline_escalates_to_key_monitoring_then_case_referral() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = decide_and_record(dir.path(), &caution_finding("C-3"), d("2026-03-02"));
    let rules = measures::load_rules(None).unwrap();
    let cal = measures::load_calendar(None).unwrap();

    // On the due day nothing is overdue yet.
    let s = ledger
        .sweep(d("2026-04-14"), &rules, &cal, "nightly")
        .unwrap();
    assert_eq!((s.overdue, s.escalated), (0, 0));

    // The day after: overdue → key-monitoring list and a new 30-working-day deadline.
    let s = ledger
        .sweep(d("2026-04-15"), &rules, &cal, "nightly")
        .unwrap();
    assert_eq!(s.escalated, 1);
    assert_eq!(s.referred, 0);
    assert!(s.overdue >= 1);
    let shown = ledger.show("C-3").unwrap();
    assert!(shown.lists.iter().any(|l| l.list_name == "key_monitoring"));
    let new_deadline = shown
        .measures
        .iter()
        .find(|m| m.code == "deadline_rectification")
        .unwrap();
    assert_eq!(new_deadline.state, "open");
    let new_due = new_deadline.due_date.clone().unwrap();
    assert_eq!(
        new_due,
        cal.add_working_days(d("2026-04-15"), 30)
            .unwrap()
            .to_string()
    );
    assert!(shown.events.iter().any(|e| e.event == "overdue"));
    assert!(shown.events.iter().any(|e| e.event == "escalated"));
    assert!(shown.measures.iter().all(|m| m.code != "case_referral"));

    // Sweeping again before the new deadline changes nothing.
    let s = ledger.sweep(d(&new_due), &rules, &cal, "nightly").unwrap();
    assert_eq!(s.escalated, 0);

    // The new deadline passes too: case referral (蒙药监 (五)).
    let after = cal.add_working_days(d(&new_due), 1).unwrap();
    let s = ledger.sweep(after, &rules, &cal, "nightly").unwrap();
    assert_eq!((s.escalated, s.referred), (1, 1));
    let shown = ledger.show("C-3").unwrap();
    let referral = shown
        .measures
        .iter()
        .find(|m| m.code == "case_referral")
        .unwrap();
    assert!(referral.article.contains("(五)"), "{}", referral.article);
    assert_eq!(shown.case.status, "open");

    // Nothing further once referred.
    let later = cal.add_working_days(after, 5).unwrap();
    let s = ledger.sweep(later, &rules, &cal, "nightly").unwrap();
    assert_eq!(s.escalated, 0);
}

#[test]
fn suspension_is_lifted_only_after_verification_and_resume_request() {
    let dir = tempfile::tempdir().unwrap();
    let finding = format!(
        r#"[{{"case_id":"C-4","enterprise_id":"{ENTERPRISE}","inspection_date":"2026-03-02",
            "conclusion":"non_compliant","defects":{{"critical":1,"major":0,"general":0}}}}]"#
    );
    let mut ledger = decide_and_record(dir.path(), &finding, d("2026-03-02"));
    let shown = ledger.show("C-4").unwrap();
    assert!(shown.measures.iter().any(|m| m.code == "suspend_sales_all"));
    assert!(
        ledger
            .record(
                "C-4",
                RecordedEvent::Lifted,
                "王五",
                "",
                d("2026-03-20"),
                false
            )
            .is_err()
    );
    assert!(
        ledger
            .record(
                "C-4",
                RecordedEvent::ResumeRequest,
                "企业",
                "",
                d("2026-03-20"),
                false
            )
            .is_err()
    );
    ledger
        .record(
            "C-4",
            RecordedEvent::ReportReceived,
            "张三",
            "",
            d("2026-03-25"),
            false,
        )
        .unwrap();
    ledger
        .record(
            "C-4",
            RecordedEvent::Verified,
            "李四",
            "",
            d("2026-03-30"),
            false,
        )
        .unwrap();
    assert_eq!(ledger.show("C-4").unwrap().case.status, "open");
    ledger
        .record(
            "C-4",
            RecordedEvent::ResumeRequest,
            "企业",
            "",
            d("2026-03-31"),
            false,
        )
        .unwrap();
    ledger
        .record(
            "C-4",
            RecordedEvent::Lifted,
            "王五",
            "GSP 符合性检查通过",
            d("2026-04-03"),
            false,
        )
        .unwrap();
    let rules = measures::load_rules(None).unwrap();
    let (doc, path) = notices::issue(
        &mut ledger,
        "C-4",
        DocumentKind::LiftingNotice,
        d("2026-04-03"),
        "王五",
        &test_authority(),
        &rules,
        Some(dir.path()),
    )
    .unwrap();
    assert_eq!(doc.number, "蒙药监解〔2026〕1号");
    assert!(
        std::fs::read_to_string(path.unwrap())
            .unwrap()
            .contains("解除")
    );
    let shown = ledger.show("C-4").unwrap();
    assert_eq!(shown.case.status, "closed");
    assert!(shown.events.iter().any(|e| e.event == "lifted"));
}

#[test]
fn document_numbers_have_no_gap_under_concurrent_issue() {
    let dir = tempfile::tempdir().unwrap();
    let findings: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"case_id":"N-{i}","enterprise_id":"{ENTERPRISE}","inspection_date":"2026-03-02",
                    "conclusion":"pending_rectification","defects":{{"critical":0,"major":2,"general":16}}}}"#
            )
        })
        .collect();
    drop(decide_and_record(
        dir.path(),
        &format!("[{}]", findings.join(",")),
        d("2026-03-02"),
    ));
    let threads = 8;
    let per_thread = 5;
    std::thread::scope(|s| {
        for t in 0..threads {
            let out = dir.path().to_path_buf();
            s.spawn(move || {
                // Each thread has its own connection to the same file, as separate processes would.
                let mut ledger =
                    Ledger::open_file(&pharmwatch_core::db::scratch_store(&out)).unwrap();
                let rules = measures::load_rules(None).unwrap();
                for _ in 0..per_thread {
                    notices::issue(
                        &mut ledger,
                        &format!("N-{t}"),
                        DocumentKind::CautionNotice,
                        d("2026-03-03"),
                        "并发测试",
                        &test_authority(),
                        &rules,
                        None,
                    )
                    .unwrap();
                }
            });
        }
    });
    let ledger = Ledger::open_file(&pharmwatch_core::db::scratch_store(dir.path())).unwrap();
    let docs = ledger.documents(None).unwrap();
    let mut seqs: Vec<i64> = docs.iter().map(|d| d.seq).collect();
    seqs.sort_unstable();
    let expected: Vec<i64> = (1..=(threads * per_thread) as i64).collect();
    assert_eq!(seqs, expected, "numbers 1..N without gap or duplicate");
    let mut numbers: Vec<&str> = docs.iter().map(|d| d.number.as_str()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), threads * per_thread);
    assert!(
        docs.iter()
            .all(|d| d.number.starts_with("蒙药监告〔2026〕"))
    );
    // Each issue appended exactly one notice_issued event carrying its number.
    let events: usize = (0..threads)
        .map(|t| {
            ledger
                .show(&format!("N-{t}"))
                .unwrap()
                .events
                .iter()
                .filter(|e| e.event == "notice_issued" && e.document_no.is_some())
                .count()
        })
        .sum();
    assert_eq!(events, threads * per_thread);
}

#[test]
fn a_case_past_the_calendar_opens_with_pending_deadlines_that_the_loaded_year_sets() {
    let dir = tempfile::tempdir().unwrap();
    // Inspected 2026-12-03: the 30-working-day deadlines end in 2027, which the built-in
    // calendar does not cover.
    let mut ledger = decide_and_record(
        dir.path(),
        &caution_finding_on("C-27", "2026-12-03"),
        d("2026-12-03"),
    );
    let case = ledger.show("C-27").unwrap();
    assert_eq!(case.case.status, "open");
    assert_eq!(case.case.due_pending_year, Some(2027));
    for code in ["deadline_rectification", "caution"] {
        let m = case.measures.iter().find(|m| m.code == code).unwrap();
        assert_eq!(m.due_date, None, "{code}");
        assert_eq!(m.due_pending_year, Some(2027), "{code}");
        assert_eq!(
            m.due_text(),
            "pending the 2027 calendar (30 working days after inspection_date 2026-12-03)"
        );
    }
    let decided = case
        .events
        .iter()
        .find(|e| e.event == "measures_decided")
        .unwrap();
    assert!(
        decided
            .note
            .contains("caution due date pending the 2027 working-day calendar"),
        "{}",
        decided.note
    );
    let shown = pharmwatch_casework::ledger::format_show(&case);
    assert!(
        shown.contains("waits for the 2027 working-day calendar"),
        "{shown}"
    );
    assert_eq!(ledger.pending_deadlines().unwrap().len(), 2);
    assert_eq!(
        ledger.list(true, None).unwrap()[0].due_pending_year,
        Some(2027)
    );

    // The caution notice states the count and promises the date.
    let rules = measures::load_rules(None).unwrap();
    let (doc, _) = notices::issue(
        &mut ledger,
        "C-27",
        DocumentKind::CautionNotice,
        d("2026-12-03"),
        "检查员甲",
        &test_authority(),
        &rules,
        None,
    )
    .unwrap();
    let (_, markdown) = ledger.document_text(&doc.number).unwrap().unwrap();
    assert!(
        markdown.contains(
            "并自2026年12月3日起30个工作日内（具体日期待2027年节假日安排公布后确定并另行告知）向本局提交书面整改报告"
        ),
        "{markdown}"
    );

    // The enterprise's guidance says the same.
    let base = Calendar::embedded().unwrap();
    let g = pharmwatch_casework::guidance::guidance(
        &ledger,
        ENTERPRISE,
        d("2026-12-04"),
        &rules,
        &base,
    )
    .unwrap();
    let caution = |g: &pharmwatch_casework::guidance::Guidance| {
        g.open_cases[0]
            .measures
            .iter()
            .find(|m| m.code == "caution")
            .cloned()
            .unwrap()
    };
    let pending = caution(&g);
    assert_eq!(pending.due_date, None);
    assert!(
        pending
            .due_pending
            .as_deref()
            .is_some_and(|t| t.starts_with("自2026年12月3日起30个工作日内")),
        "{pending:?}"
    );
    assert!(
        pending
            .next_step
            .as_ref()
            .is_some_and(|s| s.text.contains("具体日期待2027年节假日安排公布后确定")),
        "{pending:?}"
    );

    // A year that leaves a gap is refused and changes nothing.
    let year_2028 = CalendarYear::from_toml_str(
        &TEST_2027
            .replace("2027", "2028")
            .replace("2028-02-14, ", ""),
        "2028.toml",
    )
    .unwrap();
    let err = ledger
        .import_calendar_year(
            &base,
            &year_2028,
            false,
            "2028.toml",
            "运维甲",
            d("2026-12-10"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("load 2027 first"), "{err}");
    assert_eq!(ledger.pending_deadlines().unwrap().len(), 2);

    // Loading 2027 sets both dates, one event each. 2026-12-03 + 30 working days: December
    // gives 20 (12-04 … 12-31), 2027-01-01 is off, 01-04 … 01-08 (25), 01-11 … 01-15 (30).
    let year = CalendarYear::from_toml_str(TEST_2027, "2027.toml").unwrap();
    let report = ledger
        .import_calendar_year(&base, &year, false, "2027.toml", "运维甲", d("2026-12-10"))
        .unwrap();
    assert!(!report.replaced);
    assert_eq!(report.covered_until, d("2027-12-31"));
    assert_eq!(report.still_pending, 0);
    assert_eq!(report.changes.len(), 2);
    for c in &report.changes {
        assert_eq!((c.was, c.now), (None, Some(d("2027-01-15"))), "{c:?}");
    }
    let case = ledger.show("C-27").unwrap();
    let set: Vec<&str> = case
        .events
        .iter()
        .filter(|e| e.event == "deadline_set")
        .map(|e| e.note.as_str())
        .collect();
    assert_eq!(set.len(), 2, "{set:?}");
    assert!(set.contains(
        &"caution due 2027-01-15 (30 working days after inspection_date 2026-12-03): the 2027 \
          working-day calendar was loaded (test notice 2027)"
    ));
    assert!(case.events.iter().all(
        |e| e.event != "deadline_set" || (e.actor == "运维甲" && e.event_date == "2026-12-10")
    ));
    assert_eq!(case.case.due_pending_year, None);
    assert_eq!(case.case.next_due.as_deref(), Some("2027-01-15"));
    assert!(ledger.pending_deadlines().unwrap().is_empty());
    let cal = ledger.calendar(&base).unwrap();
    assert_eq!(cal.years(), 2025..=2027);
    // The guidance shows the date and the working days left, counted with the loaded year:
    // from 2026-12-10, 15 in December and 10 in January.
    let g =
        pharmwatch_casework::guidance::guidance(&ledger, ENTERPRISE, d("2026-12-10"), &rules, &cal)
            .unwrap();
    let set = caution(&g);
    assert_eq!(set.due_date, Some(d("2027-01-15")));
    assert_eq!(set.due_pending, None);
    assert_eq!(set.working_days_left, Some(25));

    // Loading 2027 again needs --replace; a corrected 2027 (01-04 and 01-05 off too) moves
    // the dates by two working days, recorded as changes.
    let err = ledger
        .import_calendar_year(&base, &year, false, "2027.toml", "运维甲", d("2026-12-11"))
        .unwrap_err();
    assert!(err.to_string().contains("--replace"), "{err}");
    let fixed = CalendarYear::from_toml_str(
        &TEST_2027.replace("to = 2027-01-03", "to = 2027-01-05"),
        "2027-fixed.toml",
    )
    .unwrap();
    let report = ledger
        .import_calendar_year(
            &base,
            &fixed,
            true,
            "2027-fixed.toml",
            "运维乙",
            d("2026-12-11"),
        )
        .unwrap();
    assert!(report.replaced);
    assert_eq!(report.changes.len(), 2);
    assert!(
        report
            .changes
            .iter()
            .all(|c| (c.was, c.now) == (Some(d("2027-01-15")), Some(d("2027-01-19"))))
    );
    let changed = ledger
        .show("C-27")
        .unwrap()
        .events
        .into_iter()
        .filter(|e| e.event == "deadline_changed")
        .count();
    assert_eq!(changed, 2);
}

#[test]
fn a_case_is_referred_on_its_facts_then_closed_by_hand_on_a_ground() {
    use pharmwatch_casework::audit::Actor;
    use pharmwatch_casework::drafts;
    use pharmwatch_casework::ledger::CloseGround;
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = decide_and_record(dir.path(), &caution_finding("C-R"), d("2026-03-02"));
    let rules = measures::load_rules(None).unwrap();
    let draft = drafts::propose_now(
        &mut ledger,
        "C-R",
        DocumentKind::CautionNotice,
        d("2026-03-02"),
        &Actor::system("nightly"),
    )
    .unwrap()
    .expect("a caution draft");

    // A referral needs its facts; with them it carries 第十八条 and 第五条（三）.
    let empty = ledger
        .refer_case("C-R", " ", d("2026-03-05"), &rules, "appr")
        .unwrap_err();
    assert!(empty.to_string().contains("facts"), "{empty}");
    let article = ledger
        .refer_case("C-R", "账外购进疑似假药", d("2026-03-05"), &rules, "appr")
        .unwrap();
    assert!(
        article.contains("第十八条") && article.contains("第五条（三）"),
        "{article}"
    );
    let again = ledger
        .refer_case("C-R", "再次移交", d("2026-03-06"), &rules, "appr")
        .unwrap_err();
    assert!(again.to_string().contains("already referred"), "{again}");
    let shown = ledger.show("C-R").unwrap();
    let referral = shown
        .measures
        .iter()
        .find(|m| m.code == "case_referral")
        .expect("the referral measure");
    assert_eq!(referral.article, article);
    assert_eq!(referral.state, "open");
    assert!(shown.events.iter().any(|e| e.event == "escalated"
        && e.note.starts_with("移交立案查处")
        && e.actor == "appr"
        && e.note.contains("账外购进疑似假药")));
    assert_eq!(shown.case.status, "open", "a referral keeps the case open");

    // Closing by hand needs a reason; it closes the case with its ground and withdraws the
    // live draft, so no number can be taken for a closed case.
    let no_reason = ledger
        .close_case(
            "C-R",
            CloseGround::Transferred,
            "",
            d("2026-03-09"),
            "appr",
            &rules,
        )
        .unwrap_err();
    assert!(no_reason.to_string().contains("reason"), "{no_reason}");
    ledger
        .close_case(
            "C-R",
            CloseGround::Transferred,
            "已移交稽查支队立案",
            d("2026-03-09"),
            "appr",
            &rules,
        )
        .unwrap();
    let shown = ledger.show("C-R").unwrap();
    assert_eq!(shown.case.status, "closed");
    assert_eq!(shown.case.closed_on.as_deref(), Some("2026-03-09"));
    let closed = shown
        .events
        .iter()
        .find(|e| e.event == "closed")
        .expect("a closed event");
    assert!(
        closed.note.contains("第十八条") && closed.note.contains("已移交稽查支队立案"),
        "{}",
        closed.note
    );
    let state: String = ledger
        .conn()
        .query_row(
            "SELECT state FROM drafts WHERE draft_id = ?1",
            [draft],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "withdrawn");
    let twice = ledger
        .close_case(
            "C-R",
            CloseGround::Compliant,
            "x",
            d("2026-03-10"),
            "appr",
            &rules,
        )
        .unwrap_err();
    assert!(twice.to_string().contains("already closed"), "{twice}");
    assert_eq!(CloseGround::parse("ceased"), Some(CloseGround::Ceased));
    assert_eq!(CloseGround::parse("reopened"), None);
}

/// `measures decide --record` opens each case on its finding's inspection date (the day the
/// facts were found), not on the day the command runs; a date given for all wins.
#[test]
fn recorded_decisions_are_dated_by_their_inspection() {
    let dir = tempfile::tempdir().unwrap();
    let findings = format!(
        "[{},{}]",
        caution_finding_on("INSP-DATED-1", "2026-03-02")
            .trim_start_matches('[')
            .trim_end_matches(']'),
        caution_finding_on("INSP-DATED-2", "2026-04-13")
            .trim_start_matches('[')
            .trim_end_matches(']'),
    );
    let path = dir.path().join("findings.json");
    std::fs::write(&path, findings).unwrap();
    let rules = measures::load_rules(None).unwrap();
    let cal = measures::load_calendar(None).unwrap();
    let out = measures::decide_file(&path, &rules, &cal).unwrap();
    assert_eq!(out.inspected_on, vec![d("2026-03-02"), d("2026-04-13")]);
    let mut ledger = Ledger::open_file(&pharmwatch_core::db::scratch_store(dir.path())).unwrap();
    assert_eq!(
        measures::record_decided(&mut ledger, &out, "检查员甲", None).unwrap(),
        (2, 0)
    );
    assert_eq!(
        ledger.show("INSP-DATED-1").unwrap().case.opened_on,
        "2026-03-02"
    );
    assert_eq!(
        ledger.show("INSP-DATED-2").unwrap().case.opened_on,
        "2026-04-13"
    );

    let other = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open_file(&pharmwatch_core::db::scratch_store(other.path())).unwrap();
    measures::record_decided(&mut ledger, &out, "检查员甲", Some(d("2026-05-06"))).unwrap();
    assert_eq!(
        ledger.show("INSP-DATED-1").unwrap().case.opened_on,
        "2026-05-06"
    );
}

/// A document proposed by hand needs the measure it serves and becomes a draft (numbered only
/// after an approver's approval); a second live draft of the same kind is refused.
#[test]
fn interview_and_suspension_documents_are_proposed_by_hand_as_drafts_of_their_measures() {
    use pharmwatch_casework::audit::Actor;
    use pharmwatch_casework::drafts;
    let dir = tempfile::tempdir().unwrap();
    // Major defects above 5: an interview (赣药监 第十二条(一)).
    let finding =
        caution_finding_on("INSP-HAND", "2026-03-02").replace("\"major\":2", "\"major\":7");
    let mut ledger = decide_and_record(dir.path(), &finding, d("2026-03-02"));
    let who = Actor {
        name: "检查员甲".into(),
        role: "inspector".into(),
    };
    let codes: Vec<String> = ledger
        .show("INSP-HAND")
        .unwrap()
        .measures
        .iter()
        .map(|m| m.code.clone())
        .collect();
    assert!(codes.contains(&"interview".to_string()), "{codes:?}");
    let e = drafts::propose_by_hand(
        &mut ledger,
        "INSP-HAND",
        DocumentKind::SuspensionDecision,
        d("2026-03-03"),
        &who,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("suspend_sales"), "{e}");
    let id = drafts::propose_by_hand(
        &mut ledger,
        "INSP-HAND",
        DocumentKind::InterviewNotice,
        d("2026-03-03"),
        &who,
    )
    .unwrap();
    let again = drafts::propose_by_hand(
        &mut ledger,
        "INSP-HAND",
        DocumentKind::InterviewNotice,
        d("2026-03-03"),
        &who,
    );
    assert!(again.unwrap_err().to_string().contains("live draft"));
    let of_case = drafts::of_case(ledger.conn(), ledger.path(), "INSP-HAND").unwrap();
    let draft = of_case.iter().find(|x| x.draft_id == id).unwrap();
    assert_eq!(draft.kind, DocumentKind::InterviewNotice.as_str());
    assert_eq!(draft.state, drafts::DraftState::Proposed);
    // Nothing is numbered or issued by a proposal.
    assert!(ledger.documents(Some("INSP-HAND")).unwrap().is_empty());
}
