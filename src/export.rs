//! Exports windows: evaluate a whole window (every metric, every cluster), then write its
//! files. A window that cannot be evaluated writes nothing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use thiserror::Error;
use tracing::{info, warn};

use crate::output::{OutputFile, window_files};
use crate::sink::{Sink, SinkError, SinkErrorKind};
use crate::source::grpc::GrpcSource;
use crate::source::http::HttpSource;
use crate::source::{Evaluated, SourceError, Stats};
use crate::state::{State, StateStore};

/// Exit codes, an API for the Job's podFailurePolicy (README, "Exit codes").
pub mod exit {
    /// Success, also "nothing to do".
    pub const OK: u8 = 0;
    /// Bad configuration, unknown bucket, denied access: retrying cannot help.
    pub const CONFIG: u8 = 2;
    /// The Querier or the sink stayed unavailable through the retries.
    pub const UNAVAILABLE: u8 = 3;
    /// A window could not be exported (data the engine refuses); earlier windows were.
    pub const PARTIAL: u8 = 4;
    /// An internal invariant failed: a bug.
    pub const INTERNAL: u8 = 5;
    /// Stopped by SIGTERM or SIGINT before finishing.
    pub const INTERRUPTED: u8 = 6;
}

/// Where the catalog is evaluated.
#[derive(Clone)]
pub enum Source {
    Grpc(Box<GrpcSource>),
    Http(Box<HttpSource>),
}

impl Source {
    /// Evaluates every catalog entry over the window starting at `start` (seconds).
    pub async fn evaluate(&self, start: i64) -> Result<Evaluated, SourceError> {
        match self {
            Source::Grpc(s) => s.evaluate(start).await,
            Source::Http(s) => s.evaluate(start).await,
        }
    }
}

/// Totals of an export.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub windows: u64,
    pub files: u64,
    pub bytes_out: u64,
    pub stats: Stats,
}

/// Why an export stopped.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("window {window} ({}) failed after {attempts} attempt(s): {source}", rfc3339(*window))]
    Window {
        window: i64,
        attempts: u32,
        source: SourceError,
    },
    #[error("window {window} ({}): {source}", rfc3339(*window))]
    Sink { window: i64, source: SinkError },
    #[error("saving the state after window {window} ({}): {source}", rfc3339(*window))]
    State { window: i64, source: SinkError },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("interrupted before window {0} ({utc}): stopped starting new windows", utc = rfc3339(*.0))]
    Interrupted(i64),
}

/// The exit code for a failure of the destination.
pub fn sink_exit_code(e: &SinkError) -> u8 {
    match e.kind() {
        SinkErrorKind::Unavailable | SinkErrorKind::Refused => exit::UNAVAILABLE,
        SinkErrorKind::NoSuchBucket
        | SinkErrorKind::AccessDenied
        | SinkErrorKind::BadCredentials
        | SinkErrorKind::NoCredentials
        | SinkErrorKind::WrongRegion => exit::CONFIG,
    }
}

impl ExportError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExportError::Window { source, .. } => match source {
                SourceError::Internal(_) => exit::INTERNAL,
                e if e.is_retryable() => exit::UNAVAILABLE,
                SourceError::Store(_) => exit::CONFIG,
                SourceError::Http { .. } => exit::CONFIG,
                _ => exit::PARTIAL,
            },
            ExportError::Sink { source, .. } | ExportError::State { source, .. } => {
                sink_exit_code(source)
            }
            ExportError::Interrupted(_) => exit::INTERRUPTED,
            ExportError::Internal(_) => exit::INTERNAL,
        }
    }
}

pub(crate) fn rfc3339(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// The window starts in `[from, to)`: multiples of `time_frame`.
pub fn window_starts(from: i64, to: i64, time_frame: i64) -> Vec<i64> {
    let first = from.div_euclid(time_frame) * time_frame;
    let first = if first < from {
        first + time_frame
    } else {
        first
    };
    (0..)
        .map(|k| first + k * time_frame)
        .take_while(|&w| w < to)
        .collect()
}

/// Exports windows from a source into a sink.
pub struct Exporter {
    pub source: Source,
    pub sink: Sink,
    pub prefix: String,
    pub cluster_label: String,
    pub cluster_name: String,
    /// Window length, seconds.
    pub time_frame: i64,
    /// Attempts per window (evaluation) and per file (upload) on transient errors.
    pub retries: u32,
    /// Uploads in flight at once.
    pub write_concurrency: usize,
    /// Windows evaluated at once; memory grows with it (one window's output each).
    pub window_concurrency: usize,
    /// This pod's shard: only the clusters it owns are written.
    pub shard: Option<crate::shard::Shard>,
}

/// One window, exported.
struct WindowDone {
    window: i64,
    files: u64,
    bytes: u64,
    stats: Stats,
    clusters: BTreeSet<String>,
}

/// The state to advance after each window, when the command keeps one.
pub struct Checkpoint<'a, 'b> {
    pub store: &'a StateStore<'b>,
    pub state: &'a mut State,
}

impl Exporter {
    /// Exports the windows; a window's files are all written before the state moves past it,
    /// and windows complete in time order even when several are evaluated at once. Stops at
    /// the first window that fails, or before the next window once `stop` is set.
    pub async fn export(
        &self,
        starts: &[i64],
        stop: &AtomicBool,
        mut checkpoint: Option<Checkpoint<'_, '_>>,
        progress: &mut Progress,
    ) -> Result<Summary, (Summary, ExportError)> {
        let mut summary = Summary::default();
        let mut windows = futures::stream::iter(starts.iter().copied())
            .take_while(|_| std::future::ready(!stop.load(Ordering::SeqCst)))
            .map(|w| self.export_window(w, stop))
            .buffered(self.window_concurrency.max(1));
        while let Some(done) = windows.next().await {
            let done = done.map_err(|e| (summary, e))?;
            if let Some(cp) = checkpoint.as_mut() {
                cp.state.advance(done.window + self.time_frame);
                cp.state.clusters.extend(done.clusters);
                cp.store.save(cp.state).await.map_err(|source| {
                    (
                        summary,
                        ExportError::State {
                            window: done.window,
                            source,
                        },
                    )
                })?;
            }
            summary.windows += 1;
            summary.files += done.files;
            summary.bytes_out += done.bytes;
            summary.stats += done.stats;
            progress.window_done(done.window, &summary);
        }
        drop(windows);
        if (summary.windows as usize) < starts.len() {
            debug_assert!(
                stop.load(Ordering::SeqCst),
                "only a stop ends the loop early"
            );
            return Err((
                summary,
                ExportError::Interrupted(starts[summary.windows as usize]),
            ));
        }
        Ok(summary)
    }

    async fn export_window(&self, w: i64, stop: &AtomicBool) -> Result<WindowDone, ExportError> {
        let Evaluated {
            results,
            steps,
            stats,
        } = self.evaluate_with_retries(w, stop).await?;
        // rendering and gzip are the exporter's heaviest CPU work: off the async runtime, so
        // the streams of the next window keep flowing meanwhile
        let (prefix, label, default, shard) = (
            self.prefix.clone(),
            self.cluster_label.clone(),
            self.cluster_name.clone(),
            self.shard,
        );
        let files = tokio::task::spawn_blocking(move || {
            window_files(&prefix, &label, &default, w, &results, &steps, shard)
        })
        .await
        .map_err(|e| ExportError::Internal(format!("rendering window {w} failed: {e}")))?;
        let clusters = files.iter().map(|f| f.cluster.clone()).collect();
        let n = files.len() as u64;
        let bytes: u64 = files.iter().map(|f| f.body.len() as u64).sum();
        self.write_with_retries(w, files).await?;
        Ok(WindowDone {
            window: w,
            files: n,
            bytes,
            stats,
            clusters,
        })
    }

    /// Uploads every file of a window; files that failed for a transient reason are tried
    /// again (each upload is whole or nothing, and keys are deterministic, so a retry
    /// overwrites instead of duplicating).
    async fn write_with_retries(
        &self,
        w: i64,
        mut files: Vec<OutputFile>,
    ) -> Result<(), ExportError> {
        let attempts = self.retries.max(1);
        let mut backoff = Backoff::default();
        for attempt in 1..=attempts {
            let results: Vec<(OutputFile, Result<(), SinkError>)> =
                futures::stream::iter(files.into_iter().map(|f| async move {
                    let r = self
                        .sink
                        .put(&f.key, f.body.clone(), "application/gzip")
                        .await;
                    (f, r)
                }))
                .buffer_unordered(self.write_concurrency.max(1))
                .collect()
                .await;
            let mut failed = Vec::new();
            let mut last_error = None;
            for (f, r) in results {
                if let Err(e) = r {
                    if !e.is_transient() || attempt == attempts {
                        return Err(ExportError::Sink {
                            window: w,
                            source: e,
                        });
                    }
                    failed.push(f);
                    last_error = Some(e);
                }
            }
            let Some(e) = last_error else { return Ok(()) };
            let pause = backoff.next_pause();
            warn!(window = %rfc3339(w), attempt, failed = failed.len(), error = %e, retry_in_ms = pause.as_millis() as u64, "uploads failed, retrying");
            tokio::time::sleep(pause).await;
            files = failed;
        }
        unreachable!("the last attempt returns")
    }

    async fn evaluate_with_retries(
        &self,
        w: i64,
        stop: &AtomicBool,
    ) -> Result<Evaluated, ExportError> {
        let attempts = self.retries.max(1);
        let mut backoff = Backoff::default();
        for attempt in 1..=attempts {
            match self.source.evaluate(w).await {
                Ok(e) => return Ok(e),
                Err(e)
                    if e.is_retryable() && attempt < attempts && !stop.load(Ordering::SeqCst) =>
                {
                    let pause = backoff.next_pause();
                    warn!(window = %rfc3339(w), attempt, error = %e, retry_in_ms = pause.as_millis() as u64, "window failed, retrying");
                    tokio::time::sleep(pause).await;
                }
                Err(source) => {
                    return Err(ExportError::Window {
                        window: w,
                        attempts: attempt,
                        source,
                    });
                }
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// Progress of a long export: a bar on a terminal, otherwise a log line every few seconds.
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

    fn window_done(&mut self, w: i64, s: &Summary) {
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

/// Pauses between attempts: from 1 s, doubling up to 30 s, each jittered.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_secs(1))
    }
}

impl Backoff {
    /// The pause before the next attempt.
    fn next_pause(&mut self) -> Duration {
        let pause = jitter(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
        pause
    }
}

/// 50 % to 100 % of `d`, so retrying exporters do not hit a recovering Querier in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_on_multiples_of_the_time_frame() {
        assert_eq!(window_starts(0, 7200, 3600), vec![0, 3600]);
        assert_eq!(window_starts(1, 7201, 3600), vec![3600, 7200]);
        assert_eq!(window_starts(3600, 3600, 3600), Vec::<i64>::new());
        assert_eq!(window_starts(-1, 1, 3600), vec![0]);
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let mut b = Backoff::default();
        let bases: Vec<u64> = (0..7)
            .map(|_| {
                let base = b.0;
                let p = b.next_pause();
                assert!(p <= base && p * 2 >= base);
                base.as_secs()
            })
            .collect();
        assert_eq!(bases, vec![1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(j >= Duration::from_secs(1) && j <= Duration::from_secs(2));
        }
    }
}
