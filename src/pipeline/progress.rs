//! Progress of a long export: a bar on a terminal, otherwise a log line every few seconds.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use super::Summary;
use crate::time::rfc3339;

/// The progress display of one export.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    began: Instant,
    last: Instant,
}

impl Progress {
    /// Progress over `total` windows; `bar` draws a progress bar (on a terminal).
    pub fn new(total: usize, bar: bool) -> Self {
        let bar = (bar && total > 1).then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} windows {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Progress {
            bar,
            total,
            began: Instant::now(),
            last: Instant::now(),
        }
    }

    pub(super) fn window_done(&mut self, w: i64, s: &Summary) {
        if let Some(b) = &self.bar {
            b.set_message(rfc3339(w));
            b.inc(1);
        } else if self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            info!(
                done = s.windows,
                windows = self.total,
                window = %rfc3339(w),
                files_written = s.files,
                elapsed_s = self.began.elapsed().as_secs(),
                "export progress"
            );
        }
    }

    /// Removes the bar before the summary is logged.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
