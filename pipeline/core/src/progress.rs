//! Progress bars for long work: one place that decides the style, hidden when not asked for
//! (tests, pipes) so that logs stay clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps, or a hidden one when `show` is false.
pub fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}
