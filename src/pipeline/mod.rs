//! The window loop: windows go to the source a batch at a time (several windows per Series
//! request); each result (one entry of one window, for one cluster or for all) is rendered,
//! compressed and written as it arrives, so memory follows a file, not a window. Once every
//! result of a batch is written, the empty files are, and the state moves past each window.
//! A window whose evaluation fails is not counted: the state still points at it and a rerun
//! writes it again (each file whole: the keys are deterministic). Retention runs after the
//! loop; the telemetry day loop (`telemetry`) after the windows.

pub mod completeness;
pub mod lateness;
pub mod progress;
pub mod retention;
pub mod retry;
pub mod state;
pub mod telemetry;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use thiserror::Error;
use tracing::warn;

use crate::exit;
use crate::finout::{Layout, OutputFile, WindowTally};
use crate::sink::{Sink, SinkError};
use crate::source::inventory::Inventory;
use crate::source::{Part, Source, SourceError, Stats};
use crate::time::rfc3339;
use completeness::{Completeness, Verdict};
use progress::Progress;
use retry::with_retries;
use state::{State, StateStore};

/// The message of the summary event that ends an `export`: the benchmark reads each child
/// export's figures from it.
pub const EXPORT_FINISHED: &str = "export finished";

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
    #[error("asking the clusters' watermarks failed after {attempts} attempt(s): {source}")]
    Watermarks { attempts: u32, source: SourceError },
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
            ExportError::Window { source, .. } | ExportError::Watermarks { source, .. } => {
                source.exit_code()
            }
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
    /// Batches of windows evaluated at once; memory grows with it.
    pub window_concurrency: usize,
    /// Windows per batch: a Series request covers them all (where that keeps the files
    /// byte-identical); memory grows with it (one file per window of a batch).
    pub windows_per_request: usize,
    /// This pod's shard: only the clusters it owns are written.
    pub shard: Option<crate::shard::Shard>,
    /// After a stop, how long the window in flight may take before it is abandoned.
    pub shutdown_timeout: Duration,
    /// Checks that every source a window expects served it; `None`: not checked (remote read:
    /// every URL answers each request, or the request fails).
    pub completeness: Option<Completeness>,
}

/// One window, exported.
struct WindowDone {
    window: i64,
    files: u64,
    bytes: u64,
    stats: Stats,
    /// Clusters with a file written.
    clusters: BTreeSet<String>,
    /// Clusters with series.
    seen: BTreeSet<String>,
    /// What the endpoint served once the window's streams ended.
    served: Arc<Inventory>,
}

/// A batch's exported windows, and the error to stop with after them when the batch's later
/// windows were refused.
struct BatchDone {
    windows: Vec<WindowDone>,
    then: Option<ExportError>,
}

/// The state to advance after each window, when the command keeps one.
pub struct Checkpoint<'a, 'b> {
    pub store: &'a StateStore<'b>,
    pub state: &'a mut State,
    /// The windows of this export written without lagging clusters (`lateness`): moved into
    /// the state as each is written, to be corrected once their data arrives.
    pub incomplete: BTreeMap<i64, BTreeMap<String, u64>>,
}

/// What one pass over windows reads and writes: every cluster, or only some (a correction of
/// late data).
struct Pass {
    source: Source,
    layout: Arc<Layout>,
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
        checkpoint: Option<Checkpoint<'_, '_>>,
        progress: &mut Progress,
    ) -> Result<Summary, (Summary, ExportError)> {
        let pass = self.pass(None);
        self.export_pass(&pass, starts, stop, checkpoint, progress)
            .await
    }

    /// Writes again the files of `clusters` only in the windows `starts` (late data arrived
    /// for them), at the same keys; the state is not touched.
    pub async fn rewrite(
        &self,
        starts: &[i64],
        clusters: &BTreeSet<String>,
        stop: &Stop,
        progress: &mut Progress,
    ) -> Result<Summary, (Summary, ExportError)> {
        let pass = self.pass(Some(clusters));
        self.export_pass(&pass, starts, stop, None, progress).await
    }

    fn pass(&self, only: Option<&BTreeSet<String>>) -> Pass {
        Pass {
            source: match only {
                Some(clusters) => self.source.only(clusters),
                None => self.source.clone(),
            },
            layout: Arc::new(Layout {
                prefix: self.prefix.clone(),
                cluster_label: self.cluster_label.clone(),
                default_cluster: self.cluster_name.clone(),
                shard: self.shard,
                only: only.cloned(),
            }),
        }
    }

    async fn export_pass(
        &self,
        pass: &Pass,
        starts: &[i64],
        stop: &Stop,
        mut checkpoint: Option<Checkpoint<'_, '_>>,
        progress: &mut Progress,
    ) -> Result<Summary, (Summary, ExportError)> {
        let mut summary = Summary::default();
        let mut batches = futures::stream::iter(starts.chunks(self.windows_per_request.max(1)))
            .take_while(|_| std::future::ready(!stop.is_requested()))
            .map(|batch| self.export_batch(pass, batch, stop))
            .buffered(self.window_concurrency.max(1));
        let abandon = stop.abandoned(self.shutdown_timeout);
        tokio::pin!(abandon);
        loop {
            let step = async {
                let Some(done) = batches.next().await else {
                    return Ok(None);
                };
                let done = done?;
                if let Some(cp) = checkpoint.as_mut() {
                    for w in &done.windows {
                        cp.state.advance(w.window + self.time_frame);
                        cp.state.clusters.extend(w.clusters.iter().cloned());
                        if let Some(c) = &self.completeness {
                            let window = (w.window, self.time_frame);
                            c.remember(&mut cp.state.sources, &w.served, window, &w.seen);
                        }
                        if let Some(lagging) = cp.incomplete.remove(&w.window) {
                            cp.state.late.incomplete.insert(w.window, lagging);
                        }
                    }
                    if let Some(packing) = self.source.packing() {
                        cp.state.packing = packing;
                    }
                    let last = done.windows.last().map(|w| w.window).unwrap_or_default();
                    cp.store
                        .save(cp.state)
                        .await
                        .map_err(|source| ExportError::State {
                            window: last,
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
            for w in done.windows {
                summary.windows += 1;
                summary.files += w.files;
                summary.bytes_out += w.bytes;
                summary.stats += w.stats;
                progress.window_done(w.window, &summary);
            }
            if let Some(e) = done.then {
                return Err((summary, e));
            }
        }
        drop(batches);
        if (summary.windows as usize) < starts.len() {
            debug_assert!(stop.is_requested(), "only a stop ends the loop early");
            return Err((
                summary,
                ExportError::Interrupted(starts[summary.windows as usize]),
            ));
        }
        Ok(summary)
    }

    /// Evaluates a batch of windows and writes their files as results arrive, with retries
    /// of the whole batch on transient errors; then the empty files of each window. Windows
    /// whose expected sources are not all served are refused (`Completeness`): the batch's
    /// first one fails the batch, a later one ends it before that window.
    async fn export_batch(
        &self,
        pass: &Pass,
        batch: &[i64],
        stop: &Stop,
    ) -> Result<BatchDone, ExportError> {
        debug_assert!(!batch.is_empty());
        let layout = &pass.layout;
        let names = Arc::new(pass.source.entry_names());
        let tf = self.time_frame;
        let attempt = async || {
            // the sources every window expects are served before its streams...
            let before = match &self.completeness {
                Some(c) => c.check(batch, tf).await?,
                None => Verdict::all(batch.len()),
            };
            let Some(ready) = batch.get(..before.complete).filter(|r| !r.is_empty()) else {
                return Err(before.refused.unwrap_or_else(|| {
                    SourceError::Internal("a batch refused without a reason".into())
                }));
            };
            let mut tallies: Vec<(WindowTally, u64, u64)> =
                ready.iter().map(|_| Default::default()).collect();
            let (tx, rx) = tokio::sync::mpsc::channel::<Part>(1);
            let produce = pass.source.evaluate_windows(ready, tx);
            let consume = self.write_parts(rx, ready, layout, &names, &mut tallies);
            let (produced, consumed) = tokio::join!(produce, consume);
            // a write that failed has had its own retries: the batch fails with it
            if let Err(e) = consumed {
                return Ok(Err(e));
            }
            let stats = produced?;
            // ...and still once they ended: a store dropped meanwhile was not asked
            let served = match &self.completeness {
                Some(c) => {
                    let after = c.check(ready, tf).await?;
                    if let Some(refused) = after.refused {
                        return Err(refused);
                    }
                    after.inventory
                }
                None => Inventory::default(),
            };
            let then = before.refused.map(|source| ExportError::Window {
                window: batch[ready.len()],
                attempts: 1,
                source,
            });
            Ok(Ok((ready.len(), tallies, stats, served, then)))
        };
        let retried = with_retries(
            self.attempts,
            |e: &SourceError| e.is_retryable() && !stop.is_requested(),
            |attempt, e, pause| {
                warn!(window = %rfc3339(batch[0]), windows = batch.len(), attempt, error = %e, retry_in_ms = pause.as_millis() as u64, "window failed, retrying");
            },
            attempt,
        )
        .await;
        let (ready, mut tallies, stats, served, then) = match retried {
            Ok(written) => written?,
            Err((source, attempts)) => {
                return Err(ExportError::Window {
                    window: batch[0],
                    attempts,
                    source,
                });
            }
        };
        let (batch, served) = (&batch[..ready], Arc::new(served));
        let mut done = Vec::with_capacity(batch.len());
        for (k, &w) in batch.iter().enumerate() {
            let (tally, files, bytes) = &mut tallies[k];
            let missing = tally.missing(layout, names.len());
            let empty: Vec<OutputFile> = missing
                .iter()
                .map(|(cluster, e)| layout.empty_file(w, &names[*e], cluster))
                .collect();
            *files += empty.len() as u64;
            *bytes += empty.iter().map(|f| f.body.len() as u64).sum::<u64>();
            let mut clusters: BTreeSet<String> =
                tally.clusters_written().map(str::to_string).collect();
            clusters.extend(empty.iter().map(|f| f.cluster.clone()));
            let seen = tally.clusters_seen().cloned().collect();
            self.write_with_retries(w, empty).await?;
            done.push(WindowDone {
                window: w,
                files: *files,
                bytes: *bytes,
                // a batch's requests serve all its windows: counted once, with the last
                stats: if k + 1 == batch.len() {
                    stats
                } else {
                    Stats::default()
                },
                clusters,
                seen,
                served: served.clone(),
            });
        }
        let _ = tokio::task::spawn_blocking(crate::observe::trim_heap).await;
        Ok(BatchDone {
            windows: done,
            then,
        })
    }

    /// Renders and uploads each part as it arrives, `write_concurrency` parts at a time; the
    /// first failure stops the batch (uploads in flight are cancelled: no object is left).
    async fn write_parts(
        &self,
        rx: tokio::sync::mpsc::Receiver<Part>,
        batch: &[i64],
        layout: &Arc<Layout>,
        names: &Arc<Vec<String>>,
        tallies: &mut [(WindowTally, u64, u64)],
    ) -> Result<(), ExportError> {
        let parts =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
        let writes = parts
            .map(|part| {
                let (layout, names) = (layout.clone(), names.clone());
                async move {
                    let Part {
                        window,
                        entry,
                        steps,
                        series,
                        rendered,
                    } = part;
                    // rendering and gzip are the exporter's heaviest CPU work: off the async
                    // runtime, so the streams keep flowing meanwhile
                    let (files, seen) = tokio::task::spawn_blocking(move || {
                        let files = layout.metric_files(window, &names[entry], &steps, &series);
                        // out of memory before the source builds its next results
                        drop(series);
                        rendered.done();
                        files
                    })
                    .await
                    .map_err(|e| {
                        ExportError::Internal(format!("rendering window {window} failed: {e}"))
                    })?;
                    let written: Vec<(String, u64)> = files
                        .iter()
                        .map(|f| (f.cluster.clone(), f.body.len() as u64))
                        .collect();
                    self.write_with_retries(window, files).await?;
                    Ok::<_, ExportError>((window, entry, written, seen))
                }
            })
            .buffer_unordered(self.write_concurrency.max(1));
        let mut writes = std::pin::pin!(writes);
        while let Some(done) = writes.next().await {
            let (window, entry, written, seen) = done?;
            let Some(k) = batch.iter().position(|&w| w == window) else {
                return Err(ExportError::Internal(format!(
                    "a result for window {window}, not in the batch"
                )));
            };
            let (tally, files, bytes) = &mut tallies[k];
            *files += written.len() as u64;
            *bytes += written.iter().map(|w| w.1).sum::<u64>();
            tally.record(entry, written.iter().map(|w| w.0.as_str()), seen);
        }
        Ok(())
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
}
