//! One Series request, from the stream to the parts it sends, in named steps:
//! - `open`: the request over some windows of a task, sent;
//! - `pump`: the stream read on the async runtime, handed over in batches;
//! - `Evaluation::run`: on the blocking pool, the series merged and folded into the entries'
//!   evaluators (one window), or set aside on disk and replayed window by window (several);
//!   each window's results sent as parts, and the next window built only once they are
//!   rendered (`RenderGate`);
//! - `learn`: what the request gave, recorded for packing later requests (`Sizes`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::mpsc;
use tracing::debug;

use super::GrpcSource;
use super::fold::{
    Decoded, Edges, EntryEvaluators, Feed, Merged, Readers, Windows, push_series, set_aside,
};
use super::input::ClientStream;
use super::plan::{EntryOutput, Task, WindowSpec, span};
use super::spill::Spill;
use crate::engine::Plan;
use crate::model::{Labels, MatchKind, Matcher, Steps};
use crate::source::part::{Part, Parts, RenderGate, send_blocking};
use crate::source::{SourceError, Stats};
use crate::store::proto::{self, AggrChunk, SeriesRequest, label_matcher::Type};

/// Series handed to the evaluation thread at a time: large enough to amortise the hand-over,
/// small enough that decoding a batch stays in the millisecond range.
const BATCH_SERIES: usize = 256;

/// Chunk bytes handed over at a time: a request over a day of windows brings ~50 KB per
/// series, and 256 of them in each of the batches in flight held ~50 MB per request.
const BATCH_BYTES: usize = 1 << 20;

/// Series per response frame asked of the StoreAPI: the batch size Thanos Query asks its own
/// stores for, so a frame's overhead is paid once per 64 series on the gRPC path as on the
/// HTTP path's fan-out.
const RESPONSE_BATCH_SIZE: i64 = 64;

/// Windows evaluated at once from set-aside answers: CPU work, so no more than the cores;
/// each holds a window's results until they are rendered. Taken on the blocking pool.
pub(super) struct ReplaySlots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A taken replay slot, given back when dropped.
struct ReplaySlot<'a>(&'a ReplaySlots);

impl ReplaySlots {
    pub fn new(n: usize) -> Self {
        debug_assert!(n > 0);
        ReplaySlots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot (call it on the blocking pool).
    fn take(&self) -> ReplaySlot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        ReplaySlot(self)
    }
}

impl Drop for ReplaySlot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// One window of a request: where its parts go and what it selects.
struct WindowJob {
    /// The window's start, seconds.
    start: i64,
    /// The range its entries select (ms, inclusive).
    range: (i64, i64),
    /// Each of the request's entries' steps in it, in entry order.
    steps: Vec<Steps>,
}

/// What the evaluation thread owns: the request's entries and windows, and where the parts go.
struct Evaluation {
    plans: Arc<Vec<Plan>>,
    replica_labels: Arc<Vec<String>>,
    lookback: i64,
    entries: Vec<usize>,
    windows: Vec<WindowJob>,
    /// The request's range (ms, inclusive).
    range: (i64, i64),
    /// The label that names a series' cluster (`CLUSTER_LABEL_NAME`), when clusters are
    /// told apart: what one cluster's series show of their store says nothing of another's.
    cluster_label: Option<String>,
    /// Set for a request over several windows: its answer is set aside there.
    spill_dir: Option<Arc<PathBuf>>,
    replays: Arc<ReplaySlots>,
    parts: Parts,
    /// Set when the request is abandoned (another request of the batch failed): no window is
    /// started after that.
    abandoned: Arc<AtomicBool>,
}

/// Marks a request abandoned when its future is dropped before the evaluation ends.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A series as a window's evaluation reads it, with which entries read it when that is known.
type ReadSeries = (Labels, Vec<AggrChunk>, Option<Readers>);

/// What the evaluation thread returns.
#[derive(Default)]
struct Evaluated {
    /// `false` when nothing was sent because a store sent whole chunks (see `set_aside`).
    done: bool,
    stats: Stats,
    /// Output series per entry, over the windows.
    series: HashMap<usize, u64>,
}

impl GrpcSource {
    /// One Series request over `windows`, evaluated for each of them and the task's entries,
    /// each window's results sent to `parts` as that window is done; `false` when nothing was
    /// sent because the request cannot give each window's files (below).
    ///
    /// Over several windows, the answer is set aside window by window on disk (`Spill`) and
    /// evaluated one window at a time, so memory is one window's, and each window is
    /// evaluated from the chunks a request for it alone gets (`dedup::cut_to`): Thanos splits
    /// overlapping replicas into pseudo-replicas by chunk bounds, and a counter's running
    /// total starts at a request's first sample, so both depend on where the stores cut a
    /// request's edge chunks. Prometheus' TSDB trims them to the request; a store gateway
    /// sends them whole, which shows as a chunk reaching past the longer request's range:
    /// then `false`, and the caller asks one window per request. So too when no series of
    /// the answer reaches the request's edges (a cluster whose data began and stopped inside
    /// it): nothing then shows whether its store trims.
    pub(super) async fn request(
        &self,
        task: &Task<'_>,
        windows: &[usize],
        specs: &[WindowSpec],
        parts: &Parts,
    ) -> Result<(bool, Stats), SourceError> {
        let entries = task.entries();
        let lead = entries[0];
        // every entry of the task's groups selects the same range in a window
        let jobs: Vec<WindowJob> = windows
            .iter()
            .map(|&w| WindowJob {
                start: specs[w].start,
                range: self.plans[lead].select_range(&specs[w].steps[lead], self.lookback_ms),
                steps: entries.iter().map(|&e| specs[w].steps[e]).collect(),
            })
            .collect();
        let range = span(jobs.iter().map(|j| j.range));
        let mut stream = self.open(task, range).await?;
        let (feed, fed) = mpsc::channel(2);
        // held until the evaluation ends: dropped with this future, it stops the evaluation
        let abandon = AbandonOnDrop(Arc::default());
        let evaluation = Evaluation {
            plans: self.plans.clone(),
            replica_labels: self.replica_labels.clone(),
            lookback: self.lookback_ms,
            entries: entries.clone(),
            windows: jobs,
            range,
            cluster_label: self.clusters.as_ref().map(|c| c.cluster_label.clone()),
            spill_dir: (windows.len() > 1).then(|| self.spill_dir.clone()),
            replays: self.replays.clone(),
            parts: parts.clone(),
            abandoned: abandon.0.clone(),
        };
        // Decoding and folding are CPU work (and the scratch files blocking I/O): they run on
        // the blocking pool, fed in batches, while this task keeps reading the stream.
        let worker = tokio::task::spawn_blocking(move || evaluation.run(fed));
        let received = pump(&mut stream, feed).await;
        let evaluated = worker
            .await
            .map_err(|e| SourceError::Internal(format!("evaluation thread failed: {e}")))?;
        received?;
        let Evaluated {
            done,
            mut stats,
            series,
        } = evaluated?;
        let bytes = stream.bytes_received();
        stats.bytes_in = bytes;
        stats.calls = 1;
        if done {
            let outputs: Vec<EntryOutput> = entries
                .iter()
                .map(|&e| EntryOutput {
                    entry: e,
                    series: series.get(&e).copied().unwrap_or(0),
                    steps: specs[windows[0]].steps[e].n as u64,
                })
                .collect();
            self.learn(&task.scope_key, &outputs, bytes, windows.len() as u64);
        }
        Ok((done, stats))
    }

    /// Sends the task's request over `range` (ms, inclusive): its matchers, the replica labels
    /// for the stores to drop (the input Thanos Query's own dedup gets).
    async fn open(&self, task: &Task<'_>, range: (i64, i64)) -> Result<ClientStream, SourceError> {
        let req = SeriesRequest {
            min_time: range.0,
            max_time: range.1,
            matchers: task.matchers()?.iter().map(to_proto).collect(),
            without_replica_labels: self.replica_labels.to_vec(),
            response_batch_size: RESPONSE_BATCH_SIZE,
            ..Default::default()
        };
        self.client.series(req).await
    }
}

/// Reads the stream to its end, handing its series to the evaluation thread in batches;
/// `Feed::End` only after a clean end.
async fn pump(stream: &mut ClientStream, feed: mpsc::Sender<Feed>) -> Result<(), SourceError> {
    let mut batch = Vec::with_capacity(BATCH_SERIES);
    let mut bytes = 0;
    while let Some(s) = stream.next().await? {
        bytes += s
            .chunks
            .iter()
            .map(|c| c.raw.as_ref().map_or(0, |r| r.data.len()))
            .sum::<usize>();
        batch.push(s);
        if batch.len() >= BATCH_SERIES || bytes >= BATCH_BYTES {
            bytes = 0;
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_SERIES));
            if feed.send(Feed::Series(full)).await.is_err() {
                return Ok(()); // the evaluation stopped: its error is the one to report
            }
        }
    }
    if !batch.is_empty() && feed.send(Feed::Series(batch)).await.is_err() {
        return Ok(());
    }
    let _ = feed.send(Feed::End).await;
    Ok(())
}

/// A matcher as the StoreAPI takes it.
fn to_proto(m: &Matcher) -> proto::LabelMatcher {
    let kind = match m.kind {
        MatchKind::Eq => Type::Eq,
        MatchKind::Neq => Type::Neq,
        MatchKind::Re(_) => Type::Re,
        MatchKind::Nre(_) => Type::Nre,
    };
    crate::store::matcher(kind, &m.name, &m.value)
}

impl Evaluation {
    /// Folds the request's series into its windows' evaluators and sends each window's
    /// results (call it on the blocking pool).
    fn run(self, fed: mpsc::Receiver<Feed>) -> Result<Evaluated, SourceError> {
        let plans = self.plans.clone();
        let replica_labels = self.replica_labels.clone();
        let evaluators = EntryEvaluators {
            plans: &plans,
            entries: &self.entries,
            lookback: self.lookback,
        };
        let mut merged = Merged::new(fed, &replica_labels);
        let mut out = Evaluated {
            done: true,
            ..Default::default()
        };
        let Some(dir) = self.spill_dir.clone() else {
            // one window: folded as the series arrive
            let mut next = || Ok(merged.next()?.map(|(l, c)| (l, c, None)));
            self.fold_window(&evaluators, 0, &mut next, &mut out.stats, &mut out.series)?;
            return Ok(out);
        };
        let scratch = |source| SourceError::Spill {
            dir: dir.display().to_string(),
            source,
        };
        let ranges: Vec<(i64, i64)> = self.windows.iter().map(|w| w.range).collect();
        let first_steps: Vec<Vec<i64>> = self
            .windows
            .iter()
            .map(|w| w.steps.iter().map(|s| s.start).collect())
            .collect();
        let windows = Windows {
            ranges: &ranges,
            first_steps: &first_steps,
        };
        let mut spill = Spill::create(&dir, ranges.len()).map_err(scratch)?;
        // clusters whose series showed their store trims, and clusters with a series cut
        // without knowing whether it does
        let (mut trimmed, mut unknown) = (HashSet::new(), HashSet::new());
        // once per cluster: nearly every series of a trimming store shows it
        let note = |seen: &mut HashSet<String>, labels: &Labels| {
            let cluster = self.cluster_label.as_deref().map_or("", |l| labels.get(l));
            if !seen.contains(cluster) {
                seen.insert(cluster.to_string());
            }
        };
        while let Some((labels, chunks)) = merged.next()? {
            let Some(set) = set_aside(
                &plans,
                &self.entries,
                &windows,
                self.range,
                &labels,
                &chunks,
            )?
            else {
                out.done = false;
                return Ok(out);
            };
            match set.edges {
                Edges::Trimmed => note(&mut trimmed, &labels),
                Edges::Unknown => note(&mut unknown, &labels),
                Edges::Silent => {}
            }
            for (k, chunks) in &set.windows {
                spill
                    .push(*k, &labels, set.readers.0, chunks)
                    .map_err(scratch)?;
            }
            out.stats.series += u64::from(!set.windows.is_empty());
        }
        // Series cut for their windows that no series of their cluster shows to come from a
        // trimming store (a cluster whose data began and stopped inside the request, on a
        // receiver): its windows' own requests might get them whole, so they are asked so.
        if unknown.iter().any(|c| !trimmed.contains(c)) {
            debug!(
                windows = ranges.len(),
                "no series shows the store trims its chunks: asking window by window"
            );
            out.done = false;
            return Ok(out);
        }
        debug!(
            bytes = spill.bytes(),
            windows = ranges.len(),
            "request set aside"
        );
        let replays = self.replays.clone();
        for (k, mut series) in spill
            .into_windows()
            .map_err(scratch)?
            .into_iter()
            .enumerate()
        {
            if self.abandoned() {
                return Err(SourceError::Internal("the request was abandoned".into()));
            }
            let _slot = replays.take();
            // series were counted once above, samples per window
            let mut replay = Stats::default();
            let mut next = || {
                let series = series.next_series().map_err(scratch)?;
                Ok(series.map(|(l, readers, c)| (l, c, Some(Readers(readers)))))
            };
            self.fold_window(&evaluators, k, &mut next, &mut replay, &mut out.series)?;
            out.stats.samples += replay.samples;
        }
        Ok(out)
    }

    /// Folds window `k`'s series (`next`, in label order) into its entries' evaluators and
    /// hands the results on.
    fn fold_window(
        &self,
        evaluators: &EntryEvaluators<'_>,
        k: usize,
        next: &mut dyn FnMut() -> Result<Option<ReadSeries>, SourceError>,
        stats: &mut Stats,
        series: &mut HashMap<usize, u64>,
    ) -> Result<(), SourceError> {
        let window = &self.windows[k];
        let mut evals = evaluators.start(&window.steps);
        let mut decoded = Decoded::default();
        while let Some((labels, chunks, readers)) = next()? {
            push_series(
                evaluators.plans,
                &mut evals,
                window.range,
                (&labels, &chunks, readers),
                &mut decoded,
                stats,
            )?;
        }
        self.hand_on(k, EntryEvaluators::finish(evals)?, series)
    }

    /// Sends window `k`'s results, one part per entry, and waits until they are rendered, so
    /// that the next window's results are built only once these are out of memory.
    fn hand_on(
        &self,
        k: usize,
        results: Vec<(usize, Vec<crate::model::Series>)>,
        series: &mut HashMap<usize, u64>,
    ) -> Result<(), SourceError> {
        let window = &self.windows[k];
        let gate = RenderGate::default();
        for ((entry, out), steps) in results.into_iter().zip(&window.steps) {
            *series.entry(entry).or_default() += out.len() as u64;
            let part = Part {
                window: window.start,
                entry,
                steps: *steps,
                series: out,
                rendered: gate.ticket(),
            };
            send_blocking(&self.parts, part)?;
        }
        gate.wait_blocking();
        Ok(())
    }

    /// Whether the request was dropped (its batch failed elsewhere).
    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_slots_hold_back_the_window_beyond_the_limit() {
        let slots = Arc::new(ReplaySlots::new(1));
        let held = slots.take();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let _slot = slots.take();
                tx.send(()).unwrap();
            })
        };
        let early = rx.recv_timeout(std::time::Duration::from_millis(50));
        assert!(early.is_err(), "no slot is free");
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("the slot given back is taken");
        waiter.join().unwrap();
        assert_eq!(*slots.free.lock().unwrap(), 1);
    }
}
