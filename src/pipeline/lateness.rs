//! Late data: a window's files are written once every cluster's data has arrived past its end,
//! and rewritten when data that arrived later changed them.
//!
//! In remote-write topologies a store can be healthy while a cluster's samples have not reached
//! it yet (a partition, a Receive rollout, an agent restart: Prometheus replays its WAL, about
//! the last 2 to 3 hours, once the link is back). A window evaluated meanwhile carries that
//! cluster's last samples forward for the lookback and misses its new pods. So each run asks
//! for every cluster's watermark (`source::watermark`: the newest sample of a metric every
//! cluster has) and:
//! - writes a window only when every expected cluster's newest sample is past its end (less one
//!   scrape interval: the last scrape before the end), or the cluster is current (at most a
//!   couple of scrape intervals behind the clock); the first window a lagging cluster holds is
//!   where the run stops, with a warning and the lag in the run metrics (exit 0: nothing failed);
//! - a window held for longer than `LATE_DATA_GRACE` after its end is written without the
//!   lagging clusters, which are remembered with their samples of the window then;
//! - on later runs, once such a cluster is past the window's end, its files of the window are
//!   written again at the same keys if its samples there changed (the data arrived late), up to
//!   `LATE_DATA_HORIZON` after the window's end.
//!
//! Expected are the clusters of the answer and those the state remembers, until their newest
//! sample is older than the horizon (a decommissioned cluster stops being waited for).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shard::Shard;
use crate::source::watermark::{ClusterMark, Watermarks};

/// The least time a cluster may be behind the clock and still count as current: a scrape
/// and its remote write's batching (Prometheus sends a batch every 5 s by default).
const CURRENT_SLACK_MS: i64 = 15_000;

/// The interval assumed for a cluster whose series each had one sample in the range.
const DEFAULT_INTERVAL_MS: i64 = 60_000;

/// How the exporter waits for late data (`run` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateSettings {
    /// The metric whose newest sample per cluster is its watermark (WATERMARK_METRIC).
    pub metric: String,
    /// How long after its end a window waits for a lagging cluster (LATE_DATA_GRACE).
    pub grace: Duration,
    /// How long after its end a window written without a cluster is still corrected
    /// (LATE_DATA_HORIZON); also how long a cluster without data stays expected.
    pub horizon: Duration,
}

/// What the state keeps of late data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateData {
    /// Every cluster a watermark answer held, with its newest sample (milliseconds): a cluster
    /// missing from a later answer has been behind since then.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, i64>,
    /// Windows written while clusters lagged (held past the grace): window start (seconds) →
    /// cluster → its samples of the watermark metric in the window when it was written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub incomplete: BTreeMap<i64, BTreeMap<String, u64>>,
    /// The clusters the last answer found behind the clock: while there are any, every run
    /// asks again (those that only wait for BATCH_DELAY too), so that the lag it reports is
    /// current.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub lagging: BTreeSet<String>,
}

impl LateData {
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty() && self.incomplete.is_empty() && self.lagging.is_empty()
    }
}

/// A cluster behind the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    pub cluster: String,
    /// Its newest sample, milliseconds.
    pub newest_ms: i64,
    /// The clock minus its newest sample, seconds.
    pub seconds: i64,
}

/// What the watermarks decide for one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LatePlan {
    /// How many of the planned windows may be written now, and how many wait.
    pub ready: usize,
    pub held: usize,
    /// Of those, the windows written without lagging clusters (the grace passed): window start
    /// → cluster → its samples in the window now.
    pub incomplete: BTreeMap<i64, BTreeMap<String, u64>>,
    /// The clusters holding the first window not written, when one is held.
    pub holding: Vec<Lag>,
    /// Every expected cluster behind the clock by more than its tolerance.
    pub lagging: Vec<Lag>,
    /// Up to when (seconds) every expected cluster's data has arrived, when one lags and its
    /// lag is within the grace: what else reads the data (the telemetry days) waits too. As
    /// for a window, a sample within an interval of an end counts as past it: a cluster whose
    /// data stopped at the end of a day has arrived up to that day's end.
    pub complete_until: Option<i64>,
    /// Windows written without clusters whose data has arrived since and changed them: window
    /// start → the clusters whose files are written again.
    pub corrections: BTreeMap<i64, BTreeSet<String>>,
    /// Entries of `LateData::incomplete` settled without a rewrite: caught up with nothing
    /// changed (the data never arrived), or no longer expected.
    pub settled: Vec<(i64, String, Settled)>,
}

/// Why a remembered incomplete window is let go without a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The cluster caught up and its samples there did not change: the data never arrived.
    Unchanged,
    /// The cluster had no data for the horizon: no longer expected (a window it lags behind is
    /// older than its newest sample, so past the horizon too).
    Retired,
    /// The window ended longer than the horizon ago: its files are no longer written again
    /// (a rewrite that kept failing).
    Expired,
}

/// Decides from the watermarks which windows a run writes and which it corrects.
#[derive(Debug, Clone)]
pub struct Lateness {
    pub settings: LateSettings,
    pub time_frame: i64,
    pub shard: Option<Shard>,
}

impl Lateness {
    /// Where the run's watermark request starts (milliseconds): the first window to write or to
    /// check again, else, while clusters lag, the first window not exported (`exported_until`,
    /// seconds); `None` when there is nothing to ask.
    pub fn since(&self, windows: &[i64], late: &LateData, exported_until: i64) -> Option<i64> {
        let first = windows.first().copied();
        let remembered = late.incomplete.keys().next().copied();
        let lagging = (!late.lagging.is_empty()).then_some(exported_until);
        first
            .into_iter()
            .chain(remembered)
            .min()
            .or(lagging)
            .map(|s| s * 1000)
    }

    /// The expected clusters' marks: those of the answer and those the state remembers, by
    /// their newest sample either knows, unless older than the horizon or of another shard.
    fn expected(&self, marks: &Watermarks, late: &LateData, now: i64) -> BTreeMap<String, Mark> {
        let horizon_ms = self.settings.horizon.as_millis() as i64;
        let mut out: BTreeMap<String, Mark> = BTreeMap::new();
        let remembered = late.clusters.iter().map(|(c, &newest)| (c, newest, None));
        let answered = marks
            .clusters
            .iter()
            .map(|(c, m)| (c, m.newest_ms, m.interval_ms));
        for (cluster, newest_ms, interval_ms) in remembered.chain(answered) {
            let m = out.entry(cluster.clone()).or_insert(Mark {
                newest_ms,
                interval_ms,
            });
            m.newest_ms = m.newest_ms.max(newest_ms);
            m.interval_ms = m.interval_ms.or(interval_ms);
        }
        out.retain(|c, m| {
            now * 1000 - m.newest_ms <= horizon_ms && self.shard.is_none_or(|s| s.owns(c))
        });
        out
    }

    /// The plan for `windows` (starts, seconds, in time order) at the clock `now` (seconds),
    /// not waiting for the `excused` clusters (a missing store's: the completeness check's,
    /// whose corrections wait for the store too).
    pub fn plan(
        &self,
        windows: &[i64],
        marks: &Watermarks,
        late: &LateData,
        now: i64,
        excused: &BTreeSet<String>,
    ) -> LatePlan {
        let all = self.expected(marks, late, now);
        let expected: BTreeMap<String, Mark> = all
            .iter()
            .filter(|(c, _)| !excused.contains(*c))
            .map(|(c, m)| (c.clone(), *m))
            .collect();
        let now_ms = now * 1000;
        let grace = self.settings.grace.as_secs() as i64;
        let horizon = self.settings.horizon.as_secs() as i64;
        let lag = |c: &str, m: &Mark| Lag {
            cluster: c.to_string(),
            newest_ms: m.newest_ms,
            seconds: (now_ms - m.newest_ms).div_euclid(1000),
        };
        let samples = |c: &str, w: i64| {
            marks
                .clusters
                .get(c)
                .and_then(|m: &ClusterMark| m.samples.get(&w))
                .copied()
                .unwrap_or(0)
        };
        let lagging: Vec<Lag> = expected
            .iter()
            .filter(|(_, m)| !m.current(now_ms))
            .map(|(c, m)| lag(c, m))
            .collect();
        let complete_until = expected
            .values()
            .filter(|m| !m.current(now_ms))
            .map(|m| (m.newest_ms + m.interval()).div_euclid(1000))
            .min()
            .filter(|&t| now - t < grace);
        let mut plan = LatePlan {
            ready: windows.len(),
            lagging,
            complete_until,
            ..Default::default()
        };
        for (k, &w) in windows.iter().enumerate() {
            let end = w + self.time_frame;
            let behind: Vec<(&String, &Mark)> = expected
                .iter()
                .filter(|(_, m)| !m.past(end * 1000, now_ms))
                .collect();
            if behind.is_empty() {
                continue;
            }
            if now - end < grace {
                plan.ready = k;
                plan.held = windows.len() - k;
                plan.holding = behind.iter().map(|(c, m)| lag(c, m)).collect();
                break;
            }
            let without = behind.iter().map(|(c, _)| ((*c).clone(), samples(c, w)));
            plan.incomplete.insert(w, without.collect());
        }
        for (&w, clusters) in &late.incomplete {
            let end = w + self.time_frame;
            for (c, &then) in clusters {
                let settled = match all.get(c) {
                    _ if now - end > horizon => Some(Settled::Expired),
                    Some(_) if excused.contains(c) => None,
                    None => Some(Settled::Retired),
                    Some(m) if m.past(end * 1000, now_ms) => {
                        if samples(c, w) == then {
                            Some(Settled::Unchanged)
                        } else {
                            plan.corrections.entry(w).or_default().insert(c.clone());
                            None
                        }
                    }
                    Some(_) => None,
                };
                if let Some(why) = settled {
                    plan.settled.push((w, c.clone(), why));
                }
            }
        }
        plan
    }

    /// Remembers the clusters of an answer with their newest sample, and forgets those whose
    /// newest is older than the horizon.
    pub fn remember(&self, late: &mut LateData, marks: &Watermarks, now: i64) {
        for (c, m) in &marks.clusters {
            let newest = late.clusters.entry(c.clone()).or_insert(m.newest_ms);
            *newest = (*newest).max(m.newest_ms);
        }
        let horizon_ms = self.settings.horizon.as_millis() as i64;
        late.clusters
            .retain(|_, &mut newest| now * 1000 - newest <= horizon_ms);
    }
}

/// An expected cluster's watermark.
#[derive(Debug, Clone, Copy)]
struct Mark {
    newest_ms: i64,
    interval_ms: Option<i64>,
}

impl Mark {
    /// How far behind the clock the cluster may be and still be current: two intervals (a
    /// scrape in flight, and one of the HA pair's replicas), and a remote write's batching.
    fn tolerance_ms(&self) -> i64 {
        2 * self.interval() + CURRENT_SLACK_MS
    }

    /// Its scrape interval (milliseconds), when the answer showed one.
    fn interval(&self) -> i64 {
        self.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS)
    }

    fn current(&self, now_ms: i64) -> bool {
        now_ms - self.newest_ms <= self.tolerance_ms()
    }

    /// Whether its data has arrived up to `end_ms`: a sample within an interval of it or past
    /// it (the last scrape before the end of a cluster that stopped there), or current (a
    /// window that ended moments ago has no sample past its end yet).
    fn past(&self, end_ms: i64, now_ms: i64) -> bool {
        self.newest_ms >= end_ms - self.interval() || self.current(now_ms)
    }
}

#[cfg(test)]
mod tests;
