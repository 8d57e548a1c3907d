//! Named fault points: the places between the durable steps of the stream's micro-batch, the
//! delivery worker, the nightly closed loop and the migration runner where a crash is most
//! likely to lose or repeat something. A test names one point and the hit at which the process
//! dies, runs the command, restarts it without the fault and checks that nothing was lost or
//! repeated.
//!
//! The points are compiled in only with the crate's `fault-points` feature, which the end-to-end
//! tests turn on (a dev-dependency of the command line); a release build has none of them and
//! [`point`] is an empty inline function. With the feature, the environment variable
//! `PHARMWATCH_FAULT=NAME` (or `NAME@N`, the N-th hit, default the first) makes the process
//! write one line to standard error and abort — no destructor, no flush, no commit: what a
//! `kill -9` or a power cut leaves behind. `NAME@N:stop` stops the process there instead
//! (SIGSTOP, as a paused virtual machine or a long garbage-collection pause would): the test
//! resumes it with SIGCONT when it has made the world move on — a zombie at a known line.
//!
//! Invariant: a point never changes behaviour when it is not the one named.

/// The environment variable that names the point to crash at.
pub const FAULT_ENV: &str = "PHARMWATCH_FAULT";

/// Every point the code holds, so a test (or an operator reading the README) can tell a
/// misspelt name from a point that was never reached.
pub const POINTS: &[&str] = &[
    "stream.before_fence",
    "stream.after_lake_files",
    "stream.in_transaction",
    "stream.after_commit",
    "stream.after_publish_send",
    "stream.before_offset_commit",
    "delivery.after_lease",
    "delivery.after_send",
    "delivery.before_record",
    "closed_loop.after_numbering",
    "closed_loop.after_rendering",
    "closed_loop.after_files",
    "migrate.after_step",
];

/// Crashes the process here when the environment names this point (feature `fault-points`).
#[cfg(feature = "fault-points")]
pub fn point(name: &'static str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static ARMED: OnceLock<Option<(String, u64, bool)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    debug_assert!(POINTS.contains(&name), "fault point {name} is not listed");
    let armed = ARMED.get_or_init(|| {
        let spec = std::env::var(FAULT_ENV).ok()?;
        let (spec, stop) = match spec.strip_suffix(":stop") {
            Some(s) => (s.to_string(), true),
            None => (spec, false),
        };
        let (point, nth) = match spec.split_once('@') {
            Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        if !POINTS.contains(&point.as_str()) {
            eprintln!("{FAULT_ENV}={point}: no such fault point (known: {POINTS:?})");
            std::process::exit(2);
        }
        Some((point, nth.max(1), stop))
    });
    if let Some((armed, nth, stop)) = armed
        && armed == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        if *stop {
            eprintln!("fault point {name} hit {nth}: stopping");
            // The process stops itself; the test's SIGCONT lets it go on from here.
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &std::process::id().to_string()])
                .status();
            eprintln!("fault point {name}: resumed");
            return;
        }
        eprintln!("fault point {name} hit {nth}: aborting");
        std::process::abort();
    }
}

/// Without the `fault-points` feature a point is nothing.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}
