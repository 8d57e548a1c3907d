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
//! `NAME@N:full` or `NAME@N:fullK` makes an I/O point ([`io_failure`]) fail as a full disk
//! (ENOSPC) at the N-th hit and the K − 1 after it (default K = 1): space runs out, then
//! comes back.
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
    "lake.write",
];

/// What a named point does when it is hit.
#[cfg(feature = "fault-points")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Abort,
    Stop,
    /// Fail as a full disk this many times.
    Full(u64),
}

/// The point the environment names, the hit it acts at and what it does (read once).
#[cfg(feature = "fault-points")]
fn armed() -> Option<&'static (String, u64, Action)> {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Option<(String, u64, Action)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(FAULT_ENV).ok()?;
            let (spec, action) = match spec.split_once(':') {
                None => (spec, Action::Abort),
                Some((s, "stop")) => (s.to_string(), Action::Stop),
                Some((s, a)) if a.starts_with("full") => {
                    let n = a["full".len()..].parse().unwrap_or(1);
                    (s.to_string(), Action::Full(n))
                }
                Some((_, a)) => {
                    eprintln!("{FAULT_ENV}: unknown action {a:?} (stop, full, fullK)");
                    std::process::exit(2);
                }
            };
            let (point, nth) = match spec.split_once('@') {
                Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            if !POINTS.contains(&point.as_str()) {
                eprintln!("{FAULT_ENV}={point}: no such fault point (known: {POINTS:?})");
                std::process::exit(2);
            }
            Some((point, nth.max(1), action))
        })
        .as_ref()
}

/// The hits of the armed point so far, this one included.
#[cfg(feature = "fault-points")]
fn hit() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static HITS: AtomicU64 = AtomicU64::new(0);
    HITS.fetch_add(1, Ordering::SeqCst) + 1
}

/// Crashes the process here when the environment names this point (feature `fault-points`).
#[cfg(feature = "fault-points")]
pub fn point(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "fault point {name} is not listed");
    let Some((armed, nth, action)) = armed() else {
        return;
    };
    if armed != name || hit() != *nth {
        return;
    }
    match action {
        Action::Stop => {
            eprintln!("fault point {name} hit {nth}: stopping");
            // The process stops itself; the test's SIGCONT lets it go on from here.
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &std::process::id().to_string()])
                .status();
            eprintln!("fault point {name}: resumed");
        }
        Action::Abort => {
            eprintln!("fault point {name} hit {nth}: aborting");
            std::process::abort();
        }
        Action::Full(_) => {}
    }
}

/// Without the `fault-points` feature a point is nothing.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}

/// An I/O point: the error a full disk gives when the environment names this point with
/// `:full` and this hit is among the failing ones (feature `fault-points`).
#[cfg(feature = "fault-points")]
pub fn io_failure(name: &'static str) -> Option<std::io::Error> {
    debug_assert!(POINTS.contains(&name), "fault point {name} is not listed");
    let (armed, nth, action) = armed()?;
    let Action::Full(times) = action else {
        return None;
    };
    if armed != name {
        return None;
    }
    let h = hit();
    (h >= *nth && h < nth + times).then(|| {
        eprintln!("fault point {name} hit {h}: no space left");
        std::io::Error::from(std::io::ErrorKind::StorageFull)
    })
}

/// Without the `fault-points` feature an I/O point never fails.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn io_failure(_name: &'static str) -> Option<std::io::Error> {
    None
}
