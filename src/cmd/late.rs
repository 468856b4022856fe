//! `run`'s late-data steps (`pipeline::lateness` decides): each cluster's watermark asked once
//! per run, the windows a lagging cluster has not reached held, and the files late data
//! changed written again.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use super::AppError;
use crate::cli::Settings;
use crate::cli::parse::format_duration;
use crate::pipeline::lateness::{LatePlan, Lateness, Settled};
use crate::pipeline::progress::Progress;
use crate::pipeline::retry::with_retries;
use crate::pipeline::state::State;
use crate::pipeline::{ExportError, Exporter, Stop, Summary};
use crate::source::watermark::{WatermarkQuery, Watermarks};
use crate::time::rfc3339;

/// What a run needs to follow late data.
pub(super) struct LateRun {
    lateness: Lateness,
    query: WatermarkQuery,
}

impl LateRun {
    /// `None` when the settings turn the check off (WATERMARK_METRIC empty).
    pub fn new(s: &Settings) -> Option<LateRun> {
        let settings = s.late.clone()?;
        Some(LateRun {
            query: WatermarkQuery {
                metric: settings.metric.clone(),
                cluster_label: s.cluster_label.clone(),
                default_cluster: s.cluster_name.clone(),
                time_frame: s.time_frame,
            },
            lateness: Lateness {
                settings,
                time_frame: s.time_frame,
                shard: s.shard,
            },
        })
    }

    /// Asks every cluster's watermark over the windows to write and those to check again, and
    /// decides: `starts` is cut before the first window a lagging cluster holds, the state
    /// learns each cluster's newest sample. A cluster whose store is missing is the
    /// completeness check's, not waited for: the run fails at its window (exit 3), or goes
    /// without it past ABSENT_CLUSTER_GRACE. `None` when there was nothing to ask.
    pub async fn plan(
        &self,
        exporter: &Exporter,
        starts: &mut Vec<i64>,
        state: &mut State,
        now: i64,
        stop: &Stop,
    ) -> Result<Option<LatePlan>, AppError> {
        let Some(since) = self
            .lateness
            .since(starts, &state.late, state.exported_until)
        else {
            return Ok(None);
        };
        let marks = self.watermarks(exporter, (since, now * 1000), stop).await?;
        let none = BTreeSet::new();
        let mut plan = self.lateness.plan(starts, &marks, &state.late, now, &none);
        if plan.ready < starts.len()
            && let Some(c) = &exporter.completeness
        {
            // the clusters of a store missing for the held windows: refused there (exit 3) or
            // exported without past ABSENT_CLUSTER_GRACE, by the completeness check alone
            c.check(&starts[plan.ready..], exporter.time_frame)
                .await
                .map_err(AppError::Preflight)?;
            let missing: BTreeSet<String> = c
                .missing_sources()
                .into_iter()
                .map(|(_, cluster)| match cluster.as_str() {
                    "" => self.query.default_cluster.clone(),
                    _ => cluster,
                })
                .collect();
            if !missing.is_empty() {
                info!(
                    clusters = %missing.iter().cloned().collect::<Vec<_>>().join(","),
                    "a store the held windows expect is missing: the completeness check decides for its clusters, not the wait for late data"
                );
                plan = self
                    .lateness
                    .plan(starts, &marks, &state.late, now, &missing);
            }
        }
        self.tell(&plan, starts);
        starts.truncate(plan.ready);
        self.lateness.remember(&mut state.late, &marks, now);
        state.late.lagging = plan.lagging.iter().map(|l| l.cluster.clone()).collect();
        for (w, c, _) in &plan.settled {
            if let Some(clusters) = state.late.incomplete.get_mut(w) {
                clusters.remove(c);
            }
        }
        state
            .late
            .incomplete
            .retain(|_, clusters| !clusters.is_empty());
        Ok(Some(plan))
    }

    async fn watermarks(
        &self,
        exporter: &Exporter,
        range: (i64, i64),
        stop: &Stop,
    ) -> Result<Watermarks, AppError> {
        let marks = with_retries(
            exporter.attempts,
            |e: &crate::source::SourceError| e.is_retryable() && !stop.is_requested(),
            |attempt, e, pause| {
                warn!(attempt, error = %e, retry_in_ms = pause.as_millis() as u64, "asking the clusters' watermarks failed, retrying");
            },
            async || exporter.source.watermarks(&self.query, range).await,
        )
        .await
        .map_err(|(source, attempts)| AppError::Export(ExportError::Watermarks { attempts, source }))?;
        info!(
            metric = %self.query.metric,
            from = %rfc3339(range.0 / 1000),
            clusters = marks.clusters.len(),
            series = marks.stats.series,
            samples = marks.stats.samples,
            bytes_in = marks.stats.bytes_in,
            "clusters' watermarks"
        );
        if marks.clusters.is_empty() {
            warn!(
                metric = %self.query.metric,
                "no series of the watermark metric: late data cannot be waited for (set WATERMARK_METRIC to a metric every cluster has, or empty to stop asking)"
            );
        }
        Ok(marks)
    }

    /// The plan's warnings: what is held and for whom, what goes out without whom, what is let go.
    fn tell(&self, plan: &LatePlan, starts: &[i64]) {
        let grace = format_duration(self.lateness.settings.grace.as_secs());
        let horizon = format_duration(self.lateness.settings.horizon.as_secs());
        if let Some(&held) = starts.get(plan.ready) {
            for lag in &plan.holding {
                warn!(
                    cluster = %lag.cluster,
                    newest_sample = %rfc3339(lag.newest_ms.div_euclid(1000)),
                    lag_s = lag.seconds,
                    held_from = %rfc3339(held),
                    windows_held = starts.len() - plan.ready,
                    "cluster {}'s data lags by {}: the windows from {} wait for it (exported once its data has arrived, or without it {grace} after their end, LATE_DATA_GRACE)",
                    lag.cluster,
                    format_duration(lag.seconds.max(0) as u64),
                    rfc3339(held)
                );
            }
        }
        let mut without: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (&w, clusters) in &plan.incomplete {
            for c in clusters.keys() {
                without.entry(c).or_default().push(w);
            }
        }
        for (c, windows) in without {
            warn!(
                cluster = c,
                windows = windows.len(),
                first = %rfc3339(windows[0]),
                "cluster {c}'s data lags past LATE_DATA_GRACE ({grace}): {} windows are exported without its late data, and written again if it arrives within LATE_DATA_HORIZON ({horizon}) of their end",
                windows.len()
            );
        }
        for (w, c, why) in &plan.settled {
            match why {
                Settled::Unchanged => {
                    info!(cluster = %c, window = %rfc3339(*w), "cluster's data caught up and did not change a window exported without it: its files stand")
                }
                Settled::Retired => {
                    warn!(cluster = %c, window = %rfc3339(*w), "cluster's late data did not arrive within LATE_DATA_HORIZON ({horizon}): its files of the window stay as exported, and it is no longer waited for")
                }
                Settled::Expired => {
                    warn!(cluster = %c, window = %rfc3339(*w), "the window ended longer than LATE_DATA_HORIZON ({horizon}) ago: its files are no longer written again for the cluster's late data")
                }
            }
        }
    }

    /// Writes again, at the same keys, the files of each cluster whose late data changed a
    /// window exported without it; each window done leaves the state's list of incomplete ones.
    pub async fn correct(
        &self,
        exporter: &Exporter,
        corrections: &BTreeMap<i64, BTreeSet<String>>,
        state: &mut State,
        stop: &Stop,
        progress: &mut Progress,
    ) -> Result<Summary, (Summary, ExportError)> {
        let mut by_clusters: BTreeMap<&BTreeSet<String>, Vec<i64>> = BTreeMap::new();
        for (&w, clusters) in corrections {
            by_clusters.entry(clusters).or_default().push(w);
        }
        let mut total = Summary::default();
        for (clusters, windows) in by_clusters {
            let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
            info!(
                clusters = names.join(","),
                windows = windows.len(),
                first = %rfc3339(windows[0]),
                "late data arrived and changed windows exported without it: writing their files again"
            );
            let done = exporter.rewrite(&windows, clusters, stop, progress).await;
            let (summary, failed) = match done {
                Ok(s) => (s, None),
                Err((s, e)) => (s, Some(e)),
            };
            total.windows += summary.windows;
            total.files += summary.files;
            total.bytes_out += summary.bytes_out;
            total.stats += summary.stats;
            // the windows are rewritten in time order: those before the failure are done
            for w in windows.iter().take(summary.windows as usize) {
                if let Some(pending) = state.late.incomplete.get_mut(w) {
                    pending.retain(|c, _| !clusters.contains(c));
                }
            }
            state.late.incomplete.retain(|_, c| !c.is_empty());
            if let Some(e) = failed {
                return Err((total, e));
            }
        }
        Ok(total)
    }
}
