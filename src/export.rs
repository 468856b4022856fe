//! Exports windows: evaluate a whole window (every metric, every cluster), then write its
//! files. A window that cannot be evaluated writes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use thiserror::Error;
use tracing::{info, warn};

use crate::output::window_files;
use crate::sink::{LocalDir, SinkError};
use crate::source::grpc::GrpcSource;
use crate::source::http::HttpSource;
use crate::source::{Evaluated, SourceError, Stats};

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
    #[error("window {window}: {source}")]
    Sink { window: i64, source: SinkError },
    #[error("interrupted before window {0}: stopped starting new windows")]
    Interrupted(i64),
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
            ExportError::Sink { .. } => exit::UNAVAILABLE,
            ExportError::Interrupted(_) => exit::INTERRUPTED,
        }
    }
}

fn rfc3339(t: i64) -> String {
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
    pub sink: LocalDir,
    pub prefix: String,
    pub cluster_label: String,
    pub cluster_name: String,
    pub retries: u32,
    pub write_concurrency: usize,
}

impl Exporter {
    /// Exports the windows in order; stops at the first window that fails, or before the next
    /// window once `stop` is set.
    pub async fn export(
        &self,
        starts: &[i64],
        stop: &AtomicBool,
    ) -> Result<Summary, (Summary, ExportError)> {
        let mut summary = Summary::default();
        let began = Instant::now();
        let mut last_progress = Instant::now();
        for (i, &w) in starts.iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                return Err((summary, ExportError::Interrupted(w)));
            }
            let evaluated = self
                .evaluate_with_retries(w, stop)
                .await
                .map_err(|e| (summary, e))?;
            let files = window_files(
                &self.prefix,
                &self.cluster_label,
                &self.cluster_name,
                w,
                &evaluated.results,
                &evaluated.steps,
            );
            let n = files.len() as u64;
            let bytes: u64 = files.iter().map(|f| f.body.len() as u64).sum();
            let mut writes = futures::stream::iter(
                files
                    .into_iter()
                    .map(|f| async move { self.sink.put(&f.key, f.body).await }),
            )
            .buffer_unordered(self.write_concurrency.max(1));
            while let Some(r) = writes.next().await {
                r.map_err(|source| (summary, ExportError::Sink { window: w, source }))?;
            }
            summary.windows += 1;
            summary.files += n;
            summary.bytes_out += bytes;
            summary.stats += evaluated.stats;
            if last_progress.elapsed() >= Duration::from_secs(5) {
                last_progress = Instant::now();
                info!(
                    done = i + 1,
                    windows = starts.len(),
                    window = %rfc3339(w),
                    elapsed_s = began.elapsed().as_secs(),
                    "export progress"
                );
            }
        }
        Ok(summary)
    }

    async fn evaluate_with_retries(
        &self,
        w: i64,
        stop: &AtomicBool,
    ) -> Result<Evaluated, ExportError> {
        let attempts = self.retries.max(1);
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=attempts {
            match self.source.evaluate(w).await {
                Ok(e) => return Ok(e),
                Err(e)
                    if e.is_retryable() && attempt < attempts && !stop.load(Ordering::SeqCst) =>
                {
                    let pause = jitter(delay);
                    warn!(window = %rfc3339(w), attempt, error = %e, retry_in_ms = pause.as_millis() as u64, "window failed, retrying");
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
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
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(j >= Duration::from_secs(1) && j <= Duration::from_secs(2));
        }
    }
}
