//! The window loop: evaluate a whole window (every metric, every cluster), then write its
//! files, then advance the state. A window that cannot be evaluated writes nothing. Retention
//! runs after the loop; the telemetry day loop (`telemetry`) after the windows.

pub mod progress;
pub mod retention;
pub mod retry;
pub mod state;
pub mod telemetry;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use thiserror::Error;
use tracing::warn;

use crate::exit;
use crate::finout::{OutputFile, window_files};
use crate::sink::{Sink, SinkError};
use crate::source::{Evaluated, Source, SourceError, Stats};
use crate::time::rfc3339;
use progress::Progress;
use retry::Backoff;
use state::{State, StateStore};

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
    #[error(
        "interrupted in window {0} ({utc}): it did not finish within SHUTDOWN_TIMEOUT and was abandoned (nothing partial is left: the state still points at it)", utc = rfc3339(*.0)
    )]
    Abandoned(i64),
}

/// A request to stop (SIGTERM, SIGINT): no window starts after it, and the one in flight is
/// abandoned once the shutdown timeout has passed.
#[derive(Clone)]
pub struct Stop(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Stop(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Stop {
    /// Asks the run to stop.
    pub fn request(&self) {
        self.0.send_replace(true);
    }

    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop was asked for.
    pub async fn requested(&self) {
        let mut rx = self.0.subscribe();
        // the sender lives in `self`, so the channel cannot close while this waits
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Resolves `grace` after a stop was asked for.
    pub async fn abandoned(&self, grace: Duration) {
        self.requested().await;
        tokio::time::sleep(grace).await;
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
                _ => exit::DATA_REFUSED,
            },
            ExportError::Sink { source, .. } | ExportError::State { source, .. } => {
                source.exit_code()
            }
            ExportError::Interrupted(_) | ExportError::Abandoned(_) => exit::INTERRUPTED,
            ExportError::Internal(_) => exit::INTERNAL,
        }
    }
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
    pub attempts: u32,
    /// Uploads in flight at once.
    pub write_concurrency: usize,
    /// Windows evaluated at once; memory grows with it (one window's output each).
    pub window_concurrency: usize,
    /// This pod's shard: only the clusters it owns are written.
    pub shard: Option<crate::shard::Shard>,
    /// After a stop, how long the window in flight may take before it is abandoned.
    pub shutdown_timeout: Duration,
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
    /// the first window that fails, or before the next window once `stop` is set; the window
    /// in flight then has the shutdown timeout to finish, or is abandoned (dropped: uploads in
    /// flight are cancelled, which leaves no object, and the state still points at it).
    pub async fn export(
        &self,
        starts: &[i64],
        stop: &Stop,
        mut checkpoint: Option<Checkpoint<'_, '_>>,
        progress: &mut Progress,
    ) -> Result<Summary, (Summary, ExportError)> {
        let mut summary = Summary::default();
        let mut windows = futures::stream::iter(starts.iter().copied())
            .take_while(|_| std::future::ready(!stop.is_requested()))
            .map(|w| self.export_window(w, stop))
            .buffered(self.window_concurrency.max(1));
        let abandon = stop.abandoned(self.shutdown_timeout);
        tokio::pin!(abandon);
        loop {
            let step = async {
                let Some(done) = windows.next().await else {
                    return Ok(None);
                };
                let done = done?;
                if let Some(cp) = checkpoint.as_mut() {
                    cp.state.advance(done.window + self.time_frame);
                    cp.state.clusters.extend(done.clusters.iter().cloned());
                    cp.store
                        .save(cp.state)
                        .await
                        .map_err(|source| ExportError::State {
                            window: done.window,
                            source,
                        })?;
                }
                Ok(Some(done))
            };
            let next = tokio::select! {
                biased;
                r = step => r,
                _ = &mut abandon => {
                    let w = starts.get(summary.windows as usize).copied().unwrap_or_default();
                    warn!(window = %rfc3339(w), shutdown_timeout_s = self.shutdown_timeout.as_secs(), "shutdown timeout passed: abandoning the window in flight");
                    return Err((summary, ExportError::Abandoned(w)));
                }
            };
            let done = match next {
                Ok(Some(done)) => done,
                Ok(None) => break,
                Err(e) => return Err((summary, e)),
            };
            summary.windows += 1;
            summary.files += done.files;
            summary.bytes_out += done.bytes;
            summary.stats += done.stats;
            progress.window_done(done.window, &summary);
        }
        drop(windows);
        if (summary.windows as usize) < starts.len() {
            debug_assert!(stop.is_requested(), "only a stop ends the loop early");
            return Err((
                summary,
                ExportError::Interrupted(starts[summary.windows as usize]),
            ));
        }
        Ok(summary)
    }

    async fn export_window(&self, w: i64, stop: &Stop) -> Result<WindowDone, ExportError> {
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

    /// Uploads every file of a window, with retries (`retry::put_all`).
    async fn write_with_retries(&self, w: i64, files: Vec<OutputFile>) -> Result<(), ExportError> {
        let files = files.into_iter().map(|f| (f.key, f.body)).collect();
        retry::put_all(
            &self.sink,
            files,
            "application/gzip",
            self.attempts,
            self.write_concurrency,
            &rfc3339(w),
        )
        .await
        .map_err(|source| ExportError::Sink { window: w, source })
    }

    async fn evaluate_with_retries(&self, w: i64, stop: &Stop) -> Result<Evaluated, ExportError> {
        let attempts = self.attempts.max(1);
        let mut backoff = Backoff::default();
        for attempt in 1..=attempts {
            match self.source.evaluate(w).await {
                Ok(e) => return Ok(e),
                Err(e) if e.is_retryable() && attempt < attempts && !stop.is_requested() => {
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
