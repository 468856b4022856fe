//! The catalog evaluated in-process over `thanos.Store/Series`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tracing::debug;

use super::spill::{SPILL_BYTES, Spill};
use super::{
    Evaluated, Part, Parts, SourceError, Stats, catalog_steps, instant_steps, name_results, send,
};
use crate::catalog::Catalog;
use crate::dedup::{cut_to, series_samples, split_overlapping, trimmed_to};
use crate::engine::{Evaluator, Plan};
use crate::model::{Labels, MatchKind, Matcher};
use crate::model::{Series, Steps};
use crate::remote_read::SeriesClient;
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

/// The output points per window (series times steps, 16 bytes each while held) up to which
/// (metric, cluster) pairs are asked together by default (REQUEST_POINTS). A tenant of ~22,000
/// series then asks a window in a few requests; a result larger than this is asked alone,
/// one cluster at a time, so a large tenant's peak stays that of its largest files. The
/// windows of a request are evaluated one at a time (`Spill`), so this bounds memory whatever
/// the number of windows a request covers.
pub const REQUEST_POINTS: u64 = 1 << 19;

/// Where the clusters are. Series requests are narrowed to one cluster at a time (and to
/// the clusters of a shard) wherever that cannot change a result: a cluster's files then come
/// from requests of their own, and Thanos Query skips the stores of other clusters.
#[derive(Clone, Debug)]
pub struct ClusterScope {
    pub cluster_label: String,
    /// Where series without the cluster label go (CLUSTER_NAME).
    pub default_cluster: String,
    /// This pod's shard: only the clusters it owns are asked for.
    pub shard: Option<crate::shard::Shard>,
}

/// Evaluates the catalog from a StoreAPI endpoint.
#[derive(Clone)]
pub struct GrpcSource {
    clusters: Option<Arc<ClusterScope>>,
    /// (group's first entry, cluster) a store answered with whole chunks (a store gateway):
    /// asked one window per request (see `request`).
    untrimmed: Arc<Mutex<HashSet<(usize, String)>>>,
    /// What earlier requests returned: how later ones are packed (`tasks`).
    sizes: Arc<Mutex<Sizes>>,
    /// The request budget, in output points (see `REQUEST_POINTS`).
    request_points: u64,
    /// Where multi-window requests set their answers aside (`Spill`).
    spill_dir: Arc<PathBuf>,
    /// Windows evaluated at once from set-aside answers: CPU work, so no more than the
    /// cores; each holds a window's results until they are rendered.
    replays: Arc<tokio::sync::Semaphore>,
    client: SeriesClient,
    catalog: Arc<Catalog>,
    plans: Arc<Vec<Plan>>,
    replica_labels: Arc<Vec<String>>,
    lookback_ms: i64,
    step: i64,
    time_frame: i64,
    concurrency: usize,
}

/// One window to evaluate: its start (seconds) and every entry's steps.
struct WindowSpec {
    start: i64,
    steps: Vec<Steps>,
}

/// Entries over the same metric and the same range (relative to their window) share one
/// stream, asking only for the matchers they all have in common.
struct Group {
    entries: Vec<usize>,
    matchers: Vec<Matcher>,
    /// The selected range relative to the window's start: groups asked together share it.
    range: (i64, i64),
    /// Every entry keeps the cluster label, so the group can be asked cluster by cluster.
    per_cluster: bool,
}

/// The cluster matchers of a batch: one per cluster, and one for them all (`None`: every
/// series; with a shard, only its clusters).
struct Scopes {
    each: Vec<Matcher>,
    all: Option<Matcher>,
}

/// What each (entry, cluster or `ALL_CLUSTERS`) asked so far gave per window: output series
/// (kept as series, not points, so that instant queries and windows measure alike), and the
/// chunk bytes a request sets aside for it (its request's, shared by output points).
#[derive(Default)]
struct Sizes {
    series: HashMap<(usize, String), u64>,
    bytes: HashMap<(usize, String), u64>,
}

impl Sizes {
    /// Output points per window of a group in a scope, if every entry's size is known.
    fn points(&self, group: &Group, key: &str, steps: &[Steps]) -> Option<u64> {
        group
            .entries
            .iter()
            .map(|&e| {
                self.series
                    .get(&(e, key.to_string()))
                    .map(|n| n * steps[e].n as u64)
            })
            .sum()
    }

    /// Chunk bytes per window of a group in a scope, if known; for all clusters, the sum of
    /// the clusters asked alone before.
    fn bytes(&self, group: &Group, key: &str) -> Option<u64> {
        group
            .entries
            .iter()
            .map(|&e| {
                self.bytes.get(&(e, key.to_string())).copied().or_else(|| {
                    let clusters = self.bytes.iter().filter(|((i, k), _)| *i == e && k != key);
                    (key == ALL_CLUSTERS)
                        .then(|| clusters.map(|(_, b)| b).sum::<u64>())
                        .filter(|&b| b > 0)
                })
            })
            .sum()
    }
}

/// The key `sizes` and `untrimmed` know a request's clusters by: `*` for all of them.
const ALL_CLUSTERS: &str = "*";

/// One Series request: groups over some windows, for one cluster or for all.
struct Task<'g> {
    groups: Vec<&'g Group>,
    windows: Vec<usize>,
    scope: Option<Matcher>,
    /// `ALL_CLUSTERS` or the one cluster's matcher value.
    scope_key: String,
}

impl Task<'_> {
    /// The request's matchers: a group's own, or for several groups their metric names and
    /// the matchers they share (`tasks` packs only groups whose other matchers are equal).
    fn matchers(&self) -> Result<Vec<Matcher>, SourceError> {
        let mut out = if let [group] = self.groups[..] {
            group.matchers.clone()
        } else {
            let names: Vec<&str> = self.groups.iter().filter_map(|g| g.metric_name()).collect();
            let re = crate::shard::alternatives(&names, false);
            let mut out = vec![
                Matcher::regex(crate::model::METRIC_NAME, &re, false)
                    .map_err(|e| SourceError::Internal(format!("metric regex {re:?}: {e}")))?,
            ];
            out.extend(self.groups[0].other_matchers().cloned());
            out
        };
        out.extend(self.scope.clone());
        Ok(out)
    }

    /// Keys of `sizes` and `untrimmed` this task covers.
    fn keys(&self) -> impl Iterator<Item = (usize, String)> + '_ {
        self.groups
            .iter()
            .map(|g| (g.entries[0], self.scope_key.clone()))
    }
}

impl Group {
    fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == crate::model::METRIC_NAME && matches!(m.kind, MatchKind::Eq))
            .map(|m| m.value.as_str())
    }

    fn other_matchers(&self) -> impl Iterator<Item = &Matcher> {
        self.matchers
            .iter()
            .filter(|m| !(m.name == crate::model::METRIC_NAME && matches!(m.kind, MatchKind::Eq)))
    }
}

impl GrpcSource {
    /// A source for `plans` (compiled from `catalog`, same order).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: impl Into<SeriesClient>,
        catalog: Arc<Catalog>,
        plans: Arc<Vec<Plan>>,
        replica_labels: Vec<String>,
        lookback_ms: i64,
        step: i64,
        time_frame: i64,
        concurrency: usize,
    ) -> Self {
        debug_assert_eq!(catalog.entries.len(), plans.len());
        GrpcSource {
            clusters: None,
            untrimmed: Default::default(),
            sizes: Default::default(),
            request_points: REQUEST_POINTS,
            spill_dir: Arc::new(std::env::temp_dir()),
            replays: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(concurrency.max(1)),
            )),
            client: client.into(),
            catalog,
            plans,
            replica_labels: Arc::new(replica_labels),
            lookback_ms,
            step,
            time_frame,
            concurrency: concurrency.max(1),
        }
    }

    /// Packs requests up to `points` output points instead of `REQUEST_POINTS`.
    pub fn with_request_points(mut self, points: u64) -> Self {
        self.request_points = points.max(1);
        self
    }

    /// Sets multi-window requests' answers aside in `dir` instead of the temporary directory.
    pub fn with_spill_dir(mut self, dir: PathBuf) -> Self {
        self.spill_dir = Arc::new(dir);
        self
    }

    /// Asks for the series of one cluster at a time (of the shard's clusters only, with one).
    pub fn with_clusters(mut self, scope: ClusterScope) -> Self {
        self.clusters = Some(Arc::new(scope));
        self
    }

    /// The catalog evaluated.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// One matcher per cluster the StoreAPI knows in `[mint, maxt]` (that the shard owns),
    /// the default cluster's matching series without the label too; `None` when requests
    /// cannot be narrowed (no scope, or an endpoint without LabelValues).
    async fn cluster_matchers(&self, mint: i64, maxt: i64) -> Result<Option<Scopes>, SourceError> {
        let Some(scope) = &self.clusters else {
            return Ok(None);
        };
        let values = match self
            .client
            .label_values(&scope.cluster_label, mint, maxt)
            .await
        {
            Ok(v) => v,
            Err(crate::store::StoreError::Status {
                code: tonic::Code::Unimplemented,
                ..
            }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let owns = |c: &str| scope.shard.is_none_or(|s| s.owns(c));
        let owned: Vec<&str> = values
            .iter()
            .map(String::as_str)
            .filter(|v| !v.is_empty() && *v != scope.default_cluster && owns(v))
            .collect();
        let mut each: Vec<Matcher> = owned
            .iter()
            .map(|v| Matcher::eq(&scope.cluster_label, v))
            .collect();
        let regex = |re: &str| {
            Matcher::regex(&scope.cluster_label, re, false)
                .map_err(|e| SourceError::Internal(format!("cluster regex {re:?}: {e}")))
        };
        let default = owns(&scope.default_cluster);
        if default {
            each.push(regex(&crate::shard::alternatives(
                &[&scope.default_cluster],
                true,
            ))?);
        }
        // without a shard, all clusters are every series
        let all = match scope.shard {
            None => None,
            Some(_) => {
                let mut values = owned;
                if default {
                    values.push(&scope.default_cluster);
                }
                Some(regex(&crate::shard::alternatives(&values, default))?)
            }
        };
        Ok(Some(Scopes { each, all }))
    }

    /// Evaluates every catalog entry over the windows starting at `starts` (seconds), sending
    /// each (window, entry, cluster) result to `parts` as soon as its request is done.
    pub async fn evaluate_windows(
        &self,
        starts: &[i64],
        parts: Parts,
    ) -> Result<Stats, SourceError> {
        let specs: Vec<WindowSpec> = starts
            .iter()
            .map(|&start| WindowSpec {
                start,
                steps: catalog_steps(&self.catalog, start, self.time_frame, self.step),
            })
            .collect();
        self.stream(&specs, &parts).await
    }

    /// Evaluates every catalog entry as an instant query at `t` (seconds).
    pub async fn evaluate_instant(&self, t: i64) -> Result<Evaluated, SourceError> {
        let steps = vec![instant_steps(t); self.plans.len()];
        let specs = [WindowSpec {
            start: t,
            steps: steps.clone(),
        }];
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Part>(self.plans.len().max(1));
        let collect = async {
            let mut results: Vec<Option<Vec<Series>>> = vec![None; self.plans.len()];
            while let Some(p) = rx.recv().await {
                results[p.entry]
                    .get_or_insert_with(Vec::new)
                    .extend(p.series);
            }
            results
        };
        let produce = async move {
            let stats = self.stream(&specs, &tx).await;
            drop(tx);
            stats
        };
        let (stats, mut results) = tokio::join!(produce, collect);
        let stats = stats?;
        // parts of several clusters arrive in any order
        for r in results.iter_mut().flatten() {
            r.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        let results = name_results(&self.catalog, results)?;
        Ok(Evaluated {
            results,
            steps,
            stats,
        })
    }

    async fn stream(&self, specs: &[WindowSpec], parts: &Parts) -> Result<Stats, SourceError> {
        // a run's first window measures what the requests of the others are packed by
        let unknown = self
            .sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .series
            .is_empty();
        if unknown && specs.len() > 1 {
            let mut stats = self.stream_windows(&specs[..1], parts).await?;
            stats += self.stream_windows(&specs[1..], parts).await?;
            return Ok(stats);
        }
        self.stream_windows(specs, parts).await
    }

    async fn stream_windows(
        &self,
        specs: &[WindowSpec],
        parts: &Parts,
    ) -> Result<Stats, SourceError> {
        let (Some(first), Some(last)) = (specs.first(), specs.last()) else {
            return Ok(Stats::default());
        };
        let cluster_label = self.clusters.as_ref().map(|c| c.cluster_label.as_str());
        let groups = stream_groups(&self.plans, &first.steps, self.lookback_ms, cluster_label);
        let mut stats = Stats::default();
        let scopes = if groups.iter().any(|g| g.per_cluster) {
            let mint = (0..self.plans.len())
                .map(|i| {
                    self.plans[i]
                        .select_range(&first.steps[i], self.lookback_ms)
                        .0
                })
                .min()
                .unwrap_or_default();
            let maxt = (0..self.plans.len())
                .map(|i| {
                    self.plans[i]
                        .select_range(&last.steps[i], self.lookback_ms)
                        .1
                })
                .max()
                .unwrap_or_default();
            stats.calls += 1;
            self.cluster_matchers(mint, maxt).await?
        } else {
            None
        };
        let tasks = {
            let sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
            let budget = self.request_points;
            tasks(
                &groups,
                &first.steps,
                specs.len(),
                scopes.as_ref(),
                &sizes,
                budget,
            )
        };
        let mut runs = futures::stream::iter(
            tasks
                .into_iter()
                .map(|task| self.run_task(task, specs, parts)),
        )
        .buffer_unordered(self.concurrency);
        while let Some(done) = runs.next().await {
            stats += done?;
        }
        Ok(stats)
    }

    /// Runs a task, its windows in as few requests as the scratch budget allows
    /// (`windows_per_request`), else one request per window where a store sends whole chunks;
    /// the results are sent to `parts` window by window.
    async fn run_task(
        &self,
        task: Task<'_>,
        specs: &[WindowSpec],
        parts: &Parts,
    ) -> Result<Stats, SourceError> {
        let mut stats = Stats::default();
        let untrimmed = || self.untrimmed.lock().unwrap_or_else(|e| e.into_inner());
        let mut rest = &task.windows[..];
        while !rest.is_empty() {
            let n = if task.keys().any(|k| untrimmed().contains(&k)) {
                1
            } else {
                let sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
                let bytes = task
                    .groups
                    .iter()
                    .map(|g| sizes.bytes(g, &task.scope_key))
                    .sum();
                windows_per_request(SPILL_BYTES, bytes)
            };
            let (now, later) = rest.split_at(n.min(rest.len()));
            rest = later;
            let (done, s) = self.request(&task, now, specs, parts).await?;
            stats += s;
            if done {
                continue;
            }
            for key in task.keys() {
                debug!(entry = %self.catalog.entries[key.0].name, scope = %key.1, "a store sends whole chunks: one window per request");
                untrimmed().insert(key);
            }
            for &w in now {
                let (done, s) = self.request(&task, &[w], specs, parts).await?;
                stats += s;
                if !done {
                    return Err(SourceError::Internal(
                        "a one-window request was given up".into(),
                    ));
                }
            }
        }
        Ok(stats)
    }

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
    /// then `false`, and the caller asks one window per request.
    async fn request(
        &self,
        task: &Task<'_>,
        windows: &[usize],
        specs: &[WindowSpec],
        parts: &Parts,
    ) -> Result<(bool, Stats), SourceError> {
        let lead = task.groups[0].entries[0];
        // every entry of the task's groups selects the same range in a window
        let ranges: Vec<(i64, i64)> = windows
            .iter()
            .map(|&w| self.plans[lead].select_range(&specs[w].steps[lead], self.lookback_ms))
            .collect();
        let mint = ranges.iter().map(|r| r.0).min().unwrap_or_default();
        let maxt = ranges.iter().map(|r| r.1).max().unwrap_or_default();
        let matchers: Vec<_> = task.matchers()?.iter().map(to_proto).collect();
        let req = SeriesRequest {
            min_time: mint,
            max_time: maxt,
            matchers,
            without_replica_labels: self.replica_labels.to_vec(),
            response_batch_size: RESPONSE_BATCH_SIZE,
            ..Default::default()
        };
        let mut stream = self.client.series(req).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<proto::Series>>(2);
        // one window's results at a time, from the evaluation thread: it evaluates the next
        // window once these are handed on (`done`), so a request holds one window's results
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(
            WindowOut,
            Option<tokio::sync::OwnedSemaphorePermit>,
            tokio::sync::oneshot::Sender<()>,
        )>(1);
        let hand_on = move |outs: WindowOut, permit| {
            let (done, handed) = tokio::sync::oneshot::channel();
            // false: the request's task stopped, and its error is the one to report
            out_tx.blocking_send((outs, permit, done)).is_ok() && handed.blocking_recv().is_ok()
        };
        let (replays, runtime) = (self.replays.clone(), tokio::runtime::Handle::current());
        let plans = self.plans.clone();
        let replica_labels = self.replica_labels.clone();
        let lookback = self.lookback_ms;
        let entries: Vec<usize> = task
            .groups
            .iter()
            .flat_map(|g| g.entries.iter().copied())
            .collect();
        let steps: Vec<Vec<Steps>> = windows
            .iter()
            .map(|&w| entries.iter().map(|&i| specs[w].steps[i]).collect())
            .collect();
        let spill = (windows.len() > 1).then(|| self.spill_dir.clone());
        let windows_of = windows.to_vec();
        let worker_entries = entries.clone();
        // Decoding and folding are CPU work (and the scratch files blocking I/O): they run on
        // the blocking pool, fed in batches, while this task keeps reading the stream.
        let worker = tokio::task::spawn_blocking(move || {
            let window = Window {
                plans: &plans,
                entries: &worker_entries,
                lookback,
            };
            let mut merged = Merged {
                rx,
                merger: SeriesMerger::new(&replica_labels),
                ready: VecDeque::new(),
                done: false,
            };
            let mut stats = Stats::default();
            let Some(dir) = spill else {
                // one window: folded as the series arrive
                let mut evals = window.evaluators(&steps[0]);
                while let Some((labels, chunks)) = merged.next()? {
                    feed(&plans, &mut evals, ranges[0], &labels, &chunks, &mut stats)?;
                }
                hand_on(window.finish(evals, windows_of[0])?, None);
                return Ok((true, stats));
            };
            let scratch = |source| SourceError::Spill {
                dir: dir.display().to_string(),
                source,
            };
            let mut spill = Spill::create(&dir, ranges.len()).map_err(scratch)?;
            while let Some((labels, chunks)) = merged.next()? {
                match set_aside(
                    &plans,
                    &worker_entries,
                    &ranges,
                    (mint, maxt),
                    &labels,
                    &chunks,
                )
                .and_then(|cuts| {
                    for (k, chunks) in cuts.iter().flatten() {
                        spill.push(*k, &labels, chunks).map_err(scratch)?;
                    }
                    Ok(cuts)
                }) {
                    Ok(Some(cuts)) => stats.series += u64::from(!cuts.is_empty()),
                    Ok(None) => return Ok((false, stats)),
                    Err(e) => return Err(e),
                }
            }
            debug!(
                bytes = spill.bytes(),
                windows = ranges.len(),
                "request set aside"
            );
            for (k, mut series) in spill
                .into_windows()
                .map_err(scratch)?
                .into_iter()
                .enumerate()
            {
                let permit = runtime
                    .block_on(replays.clone().acquire_owned())
                    .map_err(|e| SourceError::Internal(format!("replay slots: {e}")))?;
                let mut evals = window.evaluators(&steps[k]);
                // series were counted once above, samples per window
                let mut replay = Stats::default();
                while let Some((labels, chunks)) = series.next_series().map_err(scratch)? {
                    feed(&plans, &mut evals, ranges[k], &labels, &chunks, &mut replay)?;
                }
                stats.samples += replay.samples;
                if !hand_on(window.finish(evals, windows_of[k])?, Some(permit)) {
                    break;
                }
            }
            Ok::<_, SourceError>((true, stats))
        });
        let received = async {
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
                    if tx.send(std::mem::take(&mut batch)).await.is_err() {
                        return Ok(()); // the worker stopped: its error is the one to report
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch).await;
            }
            Ok::<_, SourceError>(())
        }
        .await;
        drop(tx);
        // output series per entry, over the windows
        let mut series: HashMap<usize, usize> = HashMap::new();
        let mut sent = Ok(());
        if received.is_ok() {
            while let Some((outs, permit, done)) = out_rx.recv().await {
                for (_, e, s) in &outs {
                    *series.entry(*e).or_default() += s.len();
                }
                sent = send_parts(outs, specs, parts).await;
                if sent.is_err() {
                    break;
                }
                drop(permit); // rendered: another window may be evaluated
                let _ = done.send(());
            }
        }
        drop(out_rx);
        let worked = worker
            .await
            .map_err(|e| SourceError::Internal(format!("evaluation thread failed: {e}")))?;
        received?;
        let (done, mut stats) = worked?;
        sent?;
        let (_, bytes) = stream.received();
        stats.bytes_in = bytes;
        stats.calls = 1;
        if done {
            let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
            let points = |e: usize| {
                series.get(&e).copied().unwrap_or(0) as u64 * specs[windows[0]].steps[e].n as u64
            };
            let total: u64 = entries.iter().map(|&e| points(e)).sum();
            let w = windows.len() as u64;
            for &e in &entries {
                let key = (e, task.scope_key.clone());
                let n = series.get(&e).copied().unwrap_or(0) as u64;
                sizes.series.insert(key.clone(), n.div_ceil(w));
                // the request's bytes, shared by output points (evenly when there are none)
                let share = (u128::from(bytes) * u128::from(points(e)))
                    .checked_div(u128::from(total))
                    .map_or(bytes / entries.len() as u64, |b| b as u64);
                sizes.bytes.insert(key, share.div_ceil(w));
            }
        }
        Ok((done, stats))
    }
}

/// Sends each `(window, entry, series)` result as a part, and waits until every one of them is
/// rendered (out of memory), so that a request builds its next window's results only then.
async fn send_parts(
    outs: WindowOut,
    specs: &[WindowSpec],
    parts: &Parts,
) -> Result<(), SourceError> {
    let (written, mut all_written) = tokio::sync::mpsc::channel::<()>(1);
    for (w, entry, series) in outs {
        let spec = &specs[w];
        let part = Part {
            window: spec.start,
            entry,
            steps: spec.steps[entry],
            series,
            written: Some(written.clone()),
        };
        send(parts, part).await?;
    }
    drop(written);
    // every clone dropped: rendered, or given up with the batch (whose error is reported)
    let _ = all_written.recv().await;
    Ok(())
}

/// Streams that cover the catalog in one window: entries over the same metric and time
/// range share one stream (requests and limits of CPU and memory cost one stream per
/// metric, not four), asking only for the matchers they all have in common.
fn stream_groups(
    plans: &[Plan],
    steps: &[Steps],
    lookback_ms: i64,
    cluster_label: Option<&str>,
) -> Vec<Group> {
    let mut by_key: HashMap<(String, i64, i64), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let (mint, maxt) = plan.select_range(&steps[i], lookback_ms);
        // a selector without a fixed metric name gets a stream of its own
        let name = plan
            .metric_name()
            .map_or_else(|| format!("#{i}"), str::to_string);
        let preserves = cluster_label.is_some_and(|l| plan.preserves_label(l));
        // relative to the window, so that the key holds in every window
        let range = (mint - steps[i].start, maxt - steps[i].start);
        let key = (name, range.0, range.1);
        match by_key.get(&key) {
            Some(&g) => {
                let group = &mut groups[g];
                group.entries.push(i);
                let keys: Vec<_> = plan.matchers.iter().map(Matcher::key).collect();
                group.matchers.retain(|m| keys.contains(&m.key()));
                group.per_cluster &= preserves;
            }
            None => {
                by_key.insert(key, groups.len());
                groups.push(Group {
                    entries: vec![i],
                    matchers: plan.matchers.clone(),
                    range,
                    per_cluster: preserves,
                });
            }
        }
    }
    groups
}

/// The Series requests for `windows` windows, packed by what earlier requests gave
/// (`sizes`: output points per window of a group and cluster):
/// - a group that keeps the cluster label is asked cluster by cluster (`scopes`), unless all
///   its clusters together are known to fit the budget;
/// - groups asked for all clusters, over the same range and with the same matchers but the
///   metric name, share a request while the sum of their sizes fits;
/// - the windows of a request: as many as the scratch budget allows (`run_task`, `Spill`),
///   each evaluated from the chunks a request for it alone would get (`dedup::cut_to`).
///
/// `budget`: output points per window (see `REQUEST_POINTS`). Unknown sizes (a run's first window) are
/// asked alone, cluster by cluster.
fn tasks<'g>(
    groups: &'g [Group],
    steps: &[Steps],
    windows: usize,
    scopes: Option<&Scopes>,
    sizes: &Sizes,
    budget: u64,
) -> Vec<Task<'g>> {
    let size = |g: &Group, key: &str| sizes.points(g, key, steps);
    // (groups, scope, scope key)
    let mut units: Vec<(Vec<&Group>, Option<Matcher>, String)> = Vec::new();
    // groups asked for all clusters, packed below
    let mut whole: Vec<(&Group, u64)> = Vec::new();
    for group in groups {
        let each = match scopes {
            Some(s) if group.per_cluster => Some(s),
            _ => None,
        };
        let Some(scopes) = each else {
            match size(group, ALL_CLUSTERS) {
                Some(n) => whole.push((group, n)),
                None => units.push((vec![group], None, ALL_CLUSTERS.into())),
            }
            continue;
        };
        if scopes.each.is_empty() {
            continue; // no cluster of this shard has data
        }
        let total = size(group, ALL_CLUSTERS).or_else(|| {
            scopes
                .each
                .iter()
                .map(|m| size(group, &m.value))
                .sum::<Option<u64>>()
        });
        match total {
            Some(n) if n <= budget => whole.push((group, n)),
            _ => units.extend(
                scopes
                    .each
                    .iter()
                    .map(|m| (vec![group], Some(m.clone()), m.value.clone())),
            ),
        }
    }
    // first fit, in catalog order
    let mut bins: Vec<(Vec<&Group>, u64)> = Vec::new();
    for (group, n) in whole {
        let fits = |(b, total): &&mut (Vec<&Group>, u64)| {
            let lead = b[0];
            lead.range == group.range
                && lead.per_cluster == group.per_cluster
                && lead.metric_name().is_some()
                && group.metric_name().is_some()
                && lead
                    .other_matchers()
                    .map(Matcher::key)
                    .eq(group.other_matchers().map(Matcher::key))
                && total + n <= budget
        };
        match bins.iter_mut().find(fits) {
            Some((b, total)) => {
                b.push(group);
                *total += n;
            }
            None => bins.push((vec![group], n)),
        }
    }
    let all = scopes.and_then(|s| s.all.clone());
    units.extend(bins.into_iter().map(|(b, _)| {
        let scope = if b[0].per_cluster { all.clone() } else { None };
        (b, scope, ALL_CLUSTERS.to_string())
    }));
    units
        .into_iter()
        .map(|(groups, scope, scope_key)| Task {
            groups,
            windows: (0..windows).collect(),
            scope,
            scope_key,
        })
        .collect()
}

/// Windows the next request of a task covers: as many as the scratch budget holds at the
/// task's chunk bytes per window; one while they are unknown (the first request measures them).
fn windows_per_request(budget: u64, size: Option<u64>) -> usize {
    size.map_or(1, |n| (budget / n.max(1)).max(1) as usize)
}

fn to_proto(m: &Matcher) -> proto::LabelMatcher {
    let kind = match m.kind {
        MatchKind::Eq => Type::Eq,
        MatchKind::Neq => Type::Neq,
        MatchKind::Re(_) => Type::Re,
        MatchKind::Nre(_) => Type::Nre,
    };
    crate::store::matcher(kind, &m.name, &m.value)
}

/// The results of one window of a request: `(window, entry, series)` per entry.
type WindowOut = Vec<(usize, usize, Vec<Series>)>;

/// What evaluating one window of a request takes: its entries and the evaluators' settings.
struct Window<'a> {
    plans: &'a [Plan],
    entries: &'a [usize],
    lookback: i64,
}

impl<'a> Window<'a> {
    /// The entries' evaluators over their steps in the window (`steps`, in entry order).
    fn evaluators(&self, steps: &[Steps]) -> Vec<(usize, Evaluator<'a>)> {
        debug_assert_eq!(steps.len(), self.entries.len());
        self.entries
            .iter()
            .zip(steps)
            .map(|(&i, &s)| (i, self.plans[i].evaluator(s, self.lookback)))
            .collect()
    }

    fn finish(
        &self,
        evals: Vec<(usize, Evaluator<'a>)>,
        window: usize,
    ) -> Result<WindowOut, SourceError> {
        evals
            .into_iter()
            .map(|(i, e)| Ok((window, i, e.finish()?)))
            .collect()
    }
}

/// The merged series of a request, from the batches the reading task hands over.
struct Merged<'a> {
    rx: tokio::sync::mpsc::Receiver<Vec<proto::Series>>,
    merger: SeriesMerger<'a>,
    ready: VecDeque<(Labels, Vec<AggrChunk>)>,
    done: bool,
}

impl Merged<'_> {
    /// The next series, blocking for the next batch (call it on the blocking pool).
    fn next(&mut self) -> Result<Option<(Labels, Vec<AggrChunk>)>, SourceError> {
        loop {
            if let Some(s) = self.ready.pop_front() {
                return Ok(Some(s));
            }
            if self.done {
                return Ok(None);
            }
            match self.rx.blocking_recv() {
                Some(batch) => {
                    for s in batch {
                        if let Some(m) = self.merger.push(s)? {
                            self.ready.push_back(m);
                        }
                    }
                }
                None => {
                    self.done = true;
                    self.ready.extend(self.merger.finish());
                }
            }
        }
    }
}

/// Folds one series into a window's evaluators; `range`: what the window selects.
fn feed(
    plans: &[Plan],
    evals: &mut [(usize, Evaluator<'_>)],
    (mint, maxt): (i64, i64),
    labels: &Labels,
    chunks: &[AggrChunk],
    stats: &mut Stats,
) -> Result<(), SourceError> {
    let data = |source| SourceError::Data {
        series: labels.to_string(),
        source,
    };
    // one decode per deduplication variant (counter adjustment or not), shared by entries
    let mut decoded: [Option<Vec<crate::model::Sample>>; 2] = [None, None];
    let mut any = false;
    for (i, eval) in evals.iter_mut() {
        let plan = &plans[*i];
        if !plan.matches(labels) {
            continue;
        }
        any = true;
        let slot = &mut decoded[plan.counter_func as usize];
        if slot.is_none() {
            let s = series_samples(chunks, mint, maxt, plan.counter_func).map_err(data)?;
            stats.samples += s.len() as u64;
            *slot = Some(s);
        }
        eval.push(labels, slot.as_deref().unwrap_or_default())?;
    }
    if any {
        stats.series += 1;
    }
    Ok(())
}

/// `(window, chunks)`: a series' chunks as each window reads them.
type WindowChunks = Vec<(usize, Vec<AggrChunk>)>;

/// A series of a multi-window request (over `request`), as each window (`ranges`) reads it:
/// `(window, chunks)` for the windows it has chunks in (none when no entry reads it), cut as
/// a request for that window alone gets them wherever the cut matters (see
/// `GrpcSource::request`); `None` when the cut mattered and a store sent whole chunks.
fn set_aside(
    plans: &[Plan],
    entries: &[usize],
    ranges: &[(i64, i64)],
    request: (i64, i64),
    labels: &Labels,
    chunks: &[AggrChunk],
) -> Result<Option<WindowChunks>, SourceError> {
    let read = |i: &usize| plans[*i].matches(labels);
    if !entries.iter().any(read) {
        return Ok(Some(Vec::new()));
    }
    // A single replica's samples inside a window do not depend on the cut, only a counter's
    // running total and the pseudo-replicas of overlapping chunks do.
    let cut = split_overlapping(chunks).len() > 1
        || entries.iter().any(|i| plans[*i].counter_func && read(i));
    if cut && !trimmed_to(chunks, request.0, request.1) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(ranges.len());
    for (k, &(mint, maxt)) in ranges.iter().enumerate() {
        let own: Vec<AggrChunk> = if cut {
            cut_to(chunks, mint, maxt).map_err(|source| SourceError::Data {
                series: labels.to_string(),
                source,
            })?
        } else {
            chunks
                .iter()
                .filter(|c| c.max_time >= mint && c.min_time <= maxt)
                .cloned()
                .collect()
        };
        if !own.is_empty() {
            out.push((k, own));
        }
    }
    Ok(Some(out))
}

/// Joins consecutive series that are equal once replica labels are removed (a store that
/// sent replicas separately), and checks the stream's order.
struct SeriesMerger<'a> {
    replica_labels: &'a [String],
    pending: Option<(Labels, Vec<AggrChunk>, bool)>,
}

impl<'a> SeriesMerger<'a> {
    fn new(replica_labels: &'a [String]) -> Self {
        SeriesMerger {
            replica_labels,
            pending: None,
        }
    }

    fn push(&mut self, s: proto::Series) -> Result<Option<(Labels, Vec<AggrChunk>)>, SourceError> {
        let labels = Labels::from_pairs(
            s.labels
                .into_iter()
                .filter(|l| !self.replica_labels.contains(&l.name))
                .map(|l| (l.name, l.value)),
        );
        match &mut self.pending {
            Some((pl, chunks, merged)) if *pl == labels => {
                chunks.extend(s.chunks);
                *merged = true;
                Ok(None)
            }
            Some((pl, _, _)) if labels < *pl => {
                Err(SourceError::Order(format!("{labels} after {pl}")))
            }
            _ => Ok(self
                .pending
                .replace((labels, s.chunks, false))
                .map(Self::sorted)),
        }
    }

    fn finish(&mut self) -> Option<(Labels, Vec<AggrChunk>)> {
        self.pending.take().map(Self::sorted)
    }

    // as the Querier's proxy orders the chunks of series it merged
    fn sorted(
        (labels, mut chunks, merged): (Labels, Vec<AggrChunk>, bool),
    ) -> (Labels, Vec<AggrChunk>) {
        if merged {
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
        }
        (labels, chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::decode_into;
    use crate::model::STALE_NAN_BITS;
    use crate::query_range::format_value;
    use crate::source::window_steps;
    use crate::store::proto::{Chunk, chunk::Encoding};

    fn base64(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|&c| c != b'=') {
            acc = (acc << 6) | val(c) as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    #[test]
    fn recorded_ha_staleness_markers_end_series_like_thanos_query() {
        // Chunks Thanos Query v0.42.4 sent (gRPC Series, replica label dropped) for one pod
        // of a live HA pair that ended: each replica's chunk ends with a staleness marker.
        // Evaluated the way the gRPC source does (decode, dedup, engine), the result must be
        // what the same Querier's PromQL returned: points up to the marker, then nothing.
        let fx: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/stale_ha_chunks.json")).unwrap();
        let catalog = Catalog::default_for("cluster");
        let lookback = fx["lookback_ms"].as_i64().unwrap();
        let (frame, step) = (
            fx["time_frame_seconds"].as_i64().unwrap(),
            fx["step_seconds"].as_i64().unwrap(),
        );
        let mut windows = 0;
        for s in fx["series"].as_array().unwrap() {
            let name = s["entry"].as_str().unwrap();
            let entry = catalog.entries.iter().find(|e| e.name == name).unwrap();
            let plan = Plan::compile(&entry.expr).unwrap();
            let labels = Labels::from_pairs(
                s["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
            );
            assert!(plan.matches(&labels), "{name}: {labels}");
            let chunks: Vec<AggrChunk> = s["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| AggrChunk {
                    min_time: c["min_time"].as_i64().unwrap(),
                    max_time: c["max_time"].as_i64().unwrap(),
                    raw: Some(Chunk {
                        r#type: Encoding::Xor as i32,
                        data: base64(c["data"].as_str().unwrap()).into(),
                        hash: 0,
                    }),
                    ..Default::default()
                })
                .collect();
            // the replicas overlap: this goes through the penalty merge
            assert_eq!(split_overlapping(&chunks).len(), 2, "{name}");
            for c in &chunks {
                let mut raw = Vec::new();
                decode_into(&c.raw.as_ref().unwrap().data, &mut raw).unwrap();
                assert_eq!(raw.last().unwrap().1.to_bits(), STALE_NAN_BITS, "{name}");
            }
            for w in s["windows"].as_array().unwrap() {
                let steps = window_steps(w["start"].as_i64().unwrap(), frame, step);
                let (mint, maxt) = plan.select_range(&steps, lookback);
                assert_eq!(
                    (mint, maxt),
                    (w["mint"].as_i64().unwrap(), w["maxt"].as_i64().unwrap()),
                    "{name}: the range the chunks were recorded for"
                );
                let samples = series_samples(&chunks, mint, maxt, plan.counter_func).unwrap();
                let mut eval = plan.evaluator(steps, lookback);
                eval.push(&labels, &samples).unwrap();
                let out = eval.finish().unwrap();
                let got: Vec<Vec<(i64, String)>> = out
                    .iter()
                    .map(|series| {
                        series
                            .values
                            .iter()
                            .enumerate()
                            .filter_map(|(i, v)| {
                                let mut text = String::new();
                                format_value((*v)?, &mut text);
                                Some((steps.start / 1000 + i as i64 * step, text))
                            })
                            .collect()
                    })
                    .collect();
                let thanos: Vec<(i64, String)> = w["thanos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_i64().unwrap(), p[1].as_str().unwrap().to_string()))
                    .collect();
                let at = format!("{name} window {}", w["start"]);
                assert!(
                    got.iter().flatten().all(|(_, v)| v != "NaN"),
                    "{at}: a staleness marker exported as a value: {got:?}"
                );
                if thanos.is_empty() {
                    assert!(got.is_empty(), "{at}: Thanos returns no series: {got:?}");
                } else {
                    assert_eq!(got.len(), 1, "{at}: one series");
                    assert_eq!(got[0].len(), thanos.len(), "{at}: Thanos' point count");
                    assert_eq!(got[0], thanos, "{at}: Thanos' points");
                }
                windows += 1;
            }
        }
        assert_eq!(windows, 8, "4 entries x 2 windows recorded");
    }

    #[test]
    fn entries_over_one_metric_and_range_share_a_stream() {
        let catalog = Catalog::default_for("cluster");
        let plans = crate::engine::compile(&catalog).unwrap();
        let steps = vec![window_steps(1_761_868_800, 3600, 60); plans.len()];
        let groups = stream_groups(&plans, &steps, 300_000, Some("cluster"));
        let names: Vec<(&str, usize)> = groups
            .iter()
            .map(|g| {
                let m = plans[g.entries[0]].metric_name().unwrap();
                (m, g.entries.len())
            })
            .collect();
        // requests: cpu, memory and gpu; limits: cpu and memory
        assert!(
            names.contains(&("kube_pod_container_resource_requests", 3)),
            "{names:?}"
        );
        assert!(
            names.contains(&("kube_pod_container_resource_limits", 2)),
            "{names:?}"
        );
        assert_eq!(groups.len(), plans.len() - 3);
        let requests = groups
            .iter()
            .find(|g| g.entries.len() == 3)
            .expect("the requests group");
        // only the matchers every entry has: the metric name (resource/unit differ)
        assert_eq!(requests.matchers.len(), 1, "{:?}", requests.matchers);
        // a rate looks back over its range, an instant selector over the lookback
        let rate = groups
            .iter()
            .find(|g| {
                plans[g.entries[0]].metric_name() == Some("container_cpu_usage_seconds_total")
            })
            .unwrap();
        assert!(rate.per_cluster);
        let ranges: Vec<_> = rate
            .entries
            .iter()
            .map(|&i| plans[i].select_range(&steps[i], 300_000))
            .collect();
        assert_eq!(
            ranges[0],
            (
                1_761_868_800_000 - 300_000 + 1,
                1_761_868_800_000 + 59 * 60_000
            )
        );
        // sizes unknown (a run's first window): one request per group and cluster
        let scopes = Scopes {
            each: vec![Matcher::eq("cluster", "a"), Matcher::eq("cluster", "b")],
            all: None,
        };
        let mut sizes = Sizes::default();
        let all = tasks(&groups, &steps, 6, Some(&scopes), &sizes, REQUEST_POINTS);
        let with = |all: &[Task], g: &Group| -> Vec<usize> {
            all.iter()
                .enumerate()
                .filter(|(_, t)| t.groups.iter().any(|x| std::ptr::eq(*x, g)))
                .map(|(i, _)| i)
                .collect()
        };
        assert_eq!(with(&all, rate).len(), 2);
        assert!(groups.iter().all(|g| g.per_cluster));
        assert_eq!(all.len(), 2 * groups.len());
        assert!(
            all.iter()
                .all(|t| t.groups.len() == 1 && t.windows.len() == 6)
        );
        assert!(
            all.iter()
                .all(|t| t.scope.is_some() == t.groups[0].per_cluster)
        );

        // sizes known and small (a small tenant): groups over the same range and matchers
        // but the name share a request for all clusters
        for e in 0..plans.len() {
            for key in ["a", "b", ALL_CLUSTERS] {
                sizes.series.insert((e, key.to_string()), 20);
            }
        }
        let small = tasks(&groups, &steps, 6, Some(&scopes), &sizes, REQUEST_POINTS);
        assert!(small.len() <= 5, "{} requests", small.len());
        assert!(small.iter().all(|t| t.scope.is_none()));
        let together = &small[with(&small, requests)[0]];
        assert!(together.groups.len() > 5);
        let matchers = together.matchers().unwrap();
        assert_eq!(matchers.len(), 1, "{matchers:?}");
        assert!(
            matchers[0]
                .value
                .contains("kube_pod_container_resource_requests|")
        );
        // the rate and the memory usage share their pod and container matchers
        let cadvisor = &small[with(&small, rate)[0]];
        let names: Vec<_> = cadvisor
            .groups
            .iter()
            .filter_map(|g| g.metric_name())
            .collect();
        assert_eq!(
            names,
            [
                "container_cpu_usage_seconds_total",
                "container_memory_working_set_bytes"
            ]
        );
        // windows per request: as many as the scratch budget holds (in chunk bytes, whatever
        // the output points), one while the size is unknown
        assert_eq!(windows_per_request(SPILL_BYTES, None), 1);
        assert!(
            together
                .groups
                .iter()
                .all(|g| sizes.bytes(g, ALL_CLUSTERS).is_none())
        );
        for &e in &requests.entries {
            for (key, bytes) in [("a", 3 << 20), ("b", 1 << 20)] {
                sizes.bytes.insert((e, key.to_string()), bytes);
            }
        }
        // all clusters, asked alone before: their sum
        assert_eq!(
            sizes.bytes(requests, ALL_CLUSTERS),
            Some(requests.entries.len() as u64 * (4 << 20))
        );
        assert_eq!(
            windows_per_request(SPILL_BYTES, sizes.bytes(requests, "a")),
            (SPILL_BYTES / (requests.entries.len() as u64 * (3 << 20))) as usize
        );

        // one group larger than the budget: asked per cluster, the others still share
        // requests
        let large_series = 3 * REQUEST_POINTS / 60;
        for key in ["a", "b"] {
            sizes
                .series
                .insert((requests.entries[0], key.to_string()), large_series);
        }
        sizes
            .series
            .remove(&(requests.entries[0], ALL_CLUSTERS.to_string()));
        let large = tasks(&groups, &steps, 6, Some(&scopes), &sizes, REQUEST_POINTS);
        let req = with(&large, requests);
        assert_eq!(req.len(), 2, "a request per cluster");
        assert!(req.iter().all(|&i| large[i].groups.len() == 1));
        assert!(large.iter().any(|t| t.groups.len() > 5));
    }

    #[test]
    fn a_series_is_set_aside_with_what_each_window_reads() {
        // one replica of a gauge and of a counter, 2 h in 30 min chunks, asked as one request
        // over two 1 h windows: the gauge keeps its chunks as sent (the window's samples do not
        // depend on the cut), the counter gets each window's own cut (its running total does),
        // and both give the samples of a request for that window alone
        let catalog = Catalog::default_for("cluster");
        let plans: Vec<Plan> = catalog
            .entries
            .iter()
            .map(|e| Plan::compile(&e.expr).unwrap())
            .collect();
        let entry = |name: &str| catalog.entries.iter().position(|e| e.name == name).unwrap();
        let (gauge, counter) = (entry("memory_usage"), entry("cpu_usage"));
        let labels = |name: &str| {
            Labels::from_pairs([
                ("__name__", name),
                ("cluster", "a"),
                ("container", "app"),
                ("namespace", "ns"),
                ("pod", "p"),
            ])
        };
        let samples: Vec<crate::model::Sample> = (0..480)
            .map(|i| (1_000 + i * 15_000, 10.0 + (i % 100) as f64))
            .collect();
        let chunks: Vec<AggrChunk> = samples
            .chunks(120)
            .filter_map(crate::chunk::xor_chunk)
            .collect();
        let ranges = [(1, 3_600_000), (3_300_001, 7_200_000)];
        let request = (1, 7_200_000);
        for (name, i, is_counter) in [
            ("container_memory_working_set_bytes", gauge, false),
            ("container_cpu_usage_seconds_total", counter, true),
        ] {
            let l = labels(name);
            assert!(plans[i].matches(&l) && plans[i].counter_func == is_counter);
            let set = set_aside(&plans, &[gauge, counter], &ranges, request, &l, &chunks)
                .unwrap()
                .unwrap();
            assert_eq!(set.len(), 2, "{name}: both windows");
            for (k, own) in set {
                let (mint, maxt) = ranges[k];
                let alone = cut_to(&chunks, mint, maxt).unwrap();
                if is_counter {
                    assert_eq!(own, alone, "{name} window {k}: the window's own cut");
                } else {
                    assert!(own.iter().all(|c| chunks.contains(c)), "{name}: as sent");
                }
                let want = series_samples(&alone, mint, maxt, is_counter).unwrap();
                let got = series_samples(&own, mint, maxt, is_counter).unwrap();
                assert!(!want.is_empty());
                let bits = |s: &[crate::model::Sample]| -> Vec<(i64, u64)> {
                    s.iter().map(|x| (x.0, x.1.to_bits())).collect()
                };
                assert_eq!(bits(&got), bits(&want), "{name} window {k}");
            }
        }
        // a series no entry reads is not set aside; a counter's whole chunks (a store
        // gateway's) reaching past the request give the request up
        let other = labels("kube_pod_info");
        let none = set_aside(&plans, &[gauge, counter], &ranges, request, &other, &chunks);
        assert_eq!(none.unwrap(), Some(vec![]));
        let cpu = labels("container_cpu_usage_seconds_total");
        let narrow = (1_000_000, 7_200_000);
        assert!(
            set_aside(&plans, &[counter], &ranges, narrow, &cpu, &chunks)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn replicas_sent_apart_are_joined_and_order_is_checked() {
        let series = |pairs: &[(&str, &str)], t: i64| proto::Series {
            labels: pairs
                .iter()
                .map(|(n, v)| proto::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            chunks: vec![AggrChunk {
                min_time: t,
                max_time: t + 10,
                ..Default::default()
            }],
        };
        let replicas = ["replica".to_string()];
        let mut m = SeriesMerger::new(&replicas);
        assert!(
            m.push(series(&[("pod", "a"), ("replica", "1")], 50))
                .unwrap()
                .is_none()
        );
        // the same series from the other replica: joined, chunks sorted by time
        assert!(
            m.push(series(&[("pod", "a"), ("replica", "0")], 20))
                .unwrap()
                .is_none()
        );
        let (labels, chunks) = m.push(series(&[("pod", "b")], 0)).unwrap().unwrap();
        assert_eq!(labels, Labels::from_pairs([("pod", "a")]));
        assert_eq!(
            chunks.iter().map(|c| c.min_time).collect::<Vec<_>>(),
            vec![20, 50]
        );
        // out of label order: the endpoint did not drop the replica labels
        let err = m.push(series(&[("pod", "a")], 0)).unwrap_err();
        assert!(matches!(err, SourceError::Order(_)), "{err}");
        assert_eq!(m.finish().unwrap().0, Labels::from_pairs([("pod", "b")]));
    }
}
