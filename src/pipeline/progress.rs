//! Progress of a run, on a timer that never stops while the process works: a bar on a terminal,
//! otherwise a log line every interval; and, whatever the display, every call in flight that
//! made no progress for an interval, with what it waits for (peer, endpoint, key or stream).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info, warn};

use super::Summary;
use crate::inflight;
use crate::time::rfc3339;

/// Calls without progress logged per heartbeat at most; the rest are counted.
const STALLED_SHOWN: usize = 3;

/// What the heartbeat reports.
#[derive(Default)]
struct Shown {
    phase: &'static str,
    total: usize,
    done: u64,
    files: u64,
    last_window: Option<i64>,
}

/// The progress display of one command; the heartbeat stops when it is dropped.
pub struct Progress {
    bar: Option<ProgressBar>,
    want_bar: bool,
    shown: Arc<Mutex<Shown>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

fn lock(shown: &Mutex<Shown>) -> std::sync::MutexGuard<'_, Shown> {
    shown.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress {
    /// Starts the heartbeat (on the async runtime) every `interval`; `bar` draws a progress
    /// bar once windows are planned (on a terminal).
    pub fn start(interval: Duration, bar: bool) -> Self {
        let shown = Arc::new(Mutex::new(Shown {
            phase: "preflight",
            ..Default::default()
        }));
        let heartbeat = tokio::spawn(heartbeat(interval, shown.clone(), bar));
        Progress {
            bar: None,
            want_bar: bar,
            shown,
            heartbeat,
        }
    }

    /// The windows are planned: `total` of them.
    pub fn planned(&mut self, total: usize) {
        {
            let mut s = lock(&self.shown);
            s.phase = "export";
            s.total = total;
        }
        self.bar = (self.want_bar && total > 1).then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} windows {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            crate::observe::around_bar(Some(b.clone()));
            b
        });
    }

    /// The export is over; what follows (retention) is reported as `phase`.
    pub fn phase(&self, phase: &'static str) {
        lock(&self.shown).phase = phase;
    }

    pub(super) fn window_done(&mut self, w: i64, s: &Summary) {
        if let Some(b) = &self.bar {
            b.set_message(rfc3339(w));
            b.inc(1);
        }
        let mut shown = lock(&self.shown);
        shown.done = s.windows;
        shown.files = s.files;
        shown.last_window = Some(w);
    }

    /// Removes the bar before the summary is logged, and stops the heartbeat.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            crate::observe::around_bar(None);
        }
        self.heartbeat.abort();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.bar.is_some() {
            crate::observe::around_bar(None);
        }
        self.heartbeat.abort();
    }
}

async fn heartbeat(interval: Duration, shown: Arc<Mutex<Shown>>, bar: bool) {
    let began = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let calls = inflight::snapshot();
        if !bar {
            let s = lock(&shown);
            info!(
                phase = s.phase,
                done = s.done,
                windows = s.total,
                last_window = %s.last_window.map(rfc3339).unwrap_or_default(),
                files_written = s.files,
                calls_in_flight = calls.len(),
                elapsed_s = began.elapsed().as_secs(),
                "export progress"
            );
        }
        let stalled: Vec<_> = calls.iter().filter(|c| c.idle >= interval).collect();
        for c in stalled.iter().take(STALLED_SHOWN) {
            warn!(
                peer = c.peer,
                endpoint = %c.endpoint,
                call = %c.what,
                idle_s = c.idle.as_secs(),
                elapsed_s = c.elapsed.as_secs(),
                more_stalled = stalled.len().saturating_sub(STALLED_SHOWN),
                "no progress: waiting for a call"
            );
        }
    }
}
