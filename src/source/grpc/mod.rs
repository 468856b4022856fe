//! The catalog evaluated in-process over raw series, from a StoreAPI endpoint or Prometheus
//! remote read (`input`). A batch of windows becomes Series requests (`plan`); each request's
//! series are merged, deduplicated and folded into its entries' evaluators (`fold`), several
//! windows of one request set aside on disk first (`spill`); each window's results go to the
//! pipeline as soon as they are ready (`request`).

mod fold;
mod input;
mod plan;
mod request;
mod spill;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tracing::debug;

use super::part::{Part, Parts};
use super::{Evaluated, SourceError, Stats, catalog_steps, instant_steps, name_results};
use crate::catalog::Catalog;
use crate::engine::Plan;
use crate::model::Series;
pub use input::SeriesClient;
use plan::{ALL_CLUSTERS, EntryOutput, Scopes, Sizes, Task, WindowSpec};
pub use plan::{Packing, REQUEST_POINTS};
use request::ReplaySlots;
use spill::SPILL_BYTES;

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
    /// Only these clusters are asked for (a correction of late data); `None`: every one.
    pub only: Option<std::collections::BTreeSet<String>>,
}

/// How the gRPC source asks for series and evaluates them.
#[derive(Clone, Debug)]
pub struct GrpcSettings {
    /// Labels that tell HA replicas apart: the stores drop them, the source deduplicates.
    pub replica_labels: Vec<String>,
    /// Lookback delta of instant selectors.
    pub lookback: Duration,
    /// Evaluation step and window length, seconds.
    pub step: i64,
    pub time_frame: i64,
    /// Series requests in flight at once.
    pub concurrency: usize,
    /// The request budget, in output points (see `REQUEST_POINTS`).
    pub request_points: u64,
    /// Where multi-window requests set their answers aside (`Spill`).
    pub spill_dir: PathBuf,
    /// Asks for the series of one cluster at a time (of the shard's clusters only, with one);
    /// `None`: every series at once.
    pub clusters: Option<ClusterScope>,
}

/// Evaluates the catalog from a StoreAPI endpoint or remote read.
#[derive(Clone)]
pub struct GrpcSource {
    client: SeriesClient,
    catalog: Arc<Catalog>,
    plans: Arc<Vec<Plan>>,
    clusters: Option<Arc<ClusterScope>>,
    replica_labels: Arc<Vec<String>>,
    lookback_ms: i64,
    step: i64,
    time_frame: i64,
    concurrency: usize,
    request_points: u64,
    spill_dir: Arc<PathBuf>,
    /// (group's first entry, cluster) a store answered with whole chunks (a store gateway):
    /// asked one window per request (see `request`).
    untrimmed: Arc<Mutex<HashSet<(usize, String)>>>,
    /// What earlier requests returned: how later ones are packed (`plan::tasks`).
    sizes: Arc<Mutex<Sizes>>,
    replays: Arc<ReplaySlots>,
}

/// A lock whose data stays usable after a panic elsewhere: what it guards (sizes learned, the
/// untrimmed set) only steers packing, never a result.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GrpcSource {
    /// A source for `plans` (compiled from `catalog`, same order), reading from `client`.
    pub fn new(
        client: impl Into<SeriesClient>,
        catalog: Arc<Catalog>,
        plans: Arc<Vec<Plan>>,
        settings: &GrpcSettings,
    ) -> Self {
        debug_assert_eq!(catalog.entries.len(), plans.len());
        let concurrency = settings.concurrency.max(1);
        // replays are CPU work: no more at once than the cores
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        GrpcSource {
            client: client.into(),
            catalog,
            plans,
            clusters: settings.clusters.clone().map(Arc::new),
            replica_labels: Arc::new(settings.replica_labels.clone()),
            lookback_ms: settings.lookback.as_millis() as i64,
            step: settings.step,
            time_frame: settings.time_frame,
            concurrency,
            request_points: settings.request_points.max(1),
            spill_dir: Arc::new(settings.spill_dir.clone()),
            untrimmed: Default::default(),
            sizes: Default::default(),
            replays: Arc::new(ReplaySlots::new(cores.min(concurrency))),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The transport the series are read from.
    pub fn client(&self) -> &SeriesClient {
        &self.client
    }

    /// The same source asking for the series of `clusters` only (where requests are narrowed
    /// by cluster at all): what a correction of late data reads.
    pub fn only(&self, clusters: &std::collections::BTreeSet<String>) -> GrpcSource {
        let clusters = self.clusters.as_deref().map(|scope| {
            Arc::new(ClusterScope {
                only: Some(clusters.clone()),
                ..scope.clone()
            })
        });
        GrpcSource {
            clusters,
            ..self.clone()
        }
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
        let specs = [WindowSpec {
            start: t,
            steps: vec![instant_steps(t); self.plans.len()],
        }];
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Part>(self.plans.len().max(1));
        let collect = async {
            let mut results: Vec<Option<Vec<Series>>> = vec![None; self.plans.len()];
            while let Some(p) = rx.recv().await {
                results[p.entry]
                    .get_or_insert_with(Vec::new)
                    .extend(p.series);
                p.rendered.done();
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
        Ok(Evaluated { results, stats })
    }

    async fn stream(&self, specs: &[WindowSpec], parts: &Parts) -> Result<Stats, SourceError> {
        // a run's first window measures what the requests of the others are packed by
        let unknown = lock(&self.sizes).series.is_empty();
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
        let groups =
            plan::stream_groups(&self.plans, &first.steps, self.lookback_ms, cluster_label);
        let mut stats = Stats::default();
        let scopes = if groups.iter().any(|g| g.per_cluster) {
            let (mint, _) = self.select_span(&first.steps);
            let (_, maxt) = self.select_span(&last.steps);
            stats.calls += 1;
            self.cluster_scopes(mint, maxt).await?
        } else {
            None
        };
        let tasks = plan::tasks(
            &groups,
            &first.steps,
            specs.len(),
            scopes.as_ref(),
            &lock(&self.sizes),
            self.request_points,
        );
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

    /// The range every entry of the catalog selects in a window (ms, inclusive).
    fn select_span(&self, steps: &[crate::model::Steps]) -> (i64, i64) {
        plan::span(
            self.plans
                .iter()
                .zip(steps)
                .map(|(p, s)| p.select_range(s, self.lookback_ms)),
        )
    }

    /// One matcher per cluster the store knows in `[mint, maxt]` (that the shard owns), the
    /// default cluster's matching series without the label too; `None` when requests cannot
    /// be narrowed (no scope, or a transport that cannot tell the clusters).
    async fn cluster_scopes(&self, mint: i64, maxt: i64) -> Result<Option<Scopes>, SourceError> {
        let Some(scope) = &self.clusters else {
            return Ok(None);
        };
        match self
            .client
            .label_values(&scope.cluster_label, mint, maxt)
            .await?
        {
            Some(values) => Scopes::of(scope, &values).map(Some),
            None => Ok(None),
        }
    }

    /// Runs a task, its windows in as few requests as the scratch budget allows
    /// (`plan::windows_per_request`), else one request per window where a store sends whole
    /// chunks; the results are sent to `parts` window by window.
    async fn run_task(
        &self,
        task: Task<'_>,
        specs: &[WindowSpec],
        parts: &Parts,
    ) -> Result<Stats, SourceError> {
        let mut stats = Stats::default();
        let mut rest = &task.windows[..];
        while !rest.is_empty() {
            let n = if task.keys().any(|k| lock(&self.untrimmed).contains(&k)) {
                1
            } else {
                let sizes = lock(&self.sizes);
                let bytes = task
                    .groups
                    .iter()
                    .map(|g| sizes.bytes(g, &task.scope_key))
                    .sum();
                plan::windows_per_request(SPILL_BYTES, bytes)
            };
            let (now, later) = rest.split_at(n.min(rest.len()));
            rest = later;
            let (done, s) = self.request(&task, now, specs, parts).await?;
            stats += s;
            if done {
                continue;
            }
            for key in task.keys() {
                debug!(entry = %self.catalog.entries[key.0].name, scope = %key.1, "a store sends whole chunks, or no series shows it trims them: one window per request");
                lock(&self.untrimmed).insert(key);
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

    /// What the requests so far gave, by entry name: what a later run starts packing from.
    pub fn packing(&self) -> Packing {
        lock(&self.sizes).packing(&self.catalog.entry_names())
    }

    /// Starts packing from what an earlier run's requests gave, instead of asking a run's
    /// first window entry by entry.
    pub fn seed_packing(&self, packing: &Packing) {
        *lock(&self.sizes) = Sizes::from_packing(packing, &self.catalog.entry_names());
    }

    /// Records what a request gave (see `Sizes::learn`).
    fn learn(&self, scope_key: &str, outputs: &[EntryOutput], bytes: u64, windows: u64) {
        debug_assert!(scope_key == ALL_CLUSTERS || !scope_key.is_empty());
        lock(&self.sizes).learn(scope_key, outputs, bytes, windows);
    }
}
