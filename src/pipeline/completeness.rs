//! A window's files are written only when every source that should contribute to them did.
//!
//! Thanos Query drops a store whose health check fails within seconds and answers without it,
//! with no warning: a run would then write a cluster-hour of nothing and move its state past
//! it. So before a batch of windows is asked for, and again once its streams have ended, the
//! Querier's inventory (`source::inventory`: each queryable TSDB's external labels and time
//! range) must cover every window for every source (an external label set, replica labels
//! apart) the window expects:
//! - the sources the state remembers from exported windows whose clusters had data, and those
//!   the Querier serves when the run starts;
//! - not before a source's first data, and not once it has been absent (no exported window,
//!   no data in any store) for longer than the grace: a cluster decommissioned for good must
//!   not block forever. It is expected again as soon as a store serves it.
//!
//! One replica of an HA pair missing is no gap: the other serves the same label set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use tracing::{info, warn};

use super::state::SourceSeen;
use crate::model::Labels;
use crate::shard::Shard;
use crate::source::SourceError;
use crate::source::inventory::{Inventory, InventorySource, Served};
use crate::time::rfc3339;

/// Checks windows against what the endpoint serves.
pub struct Completeness {
    source: InventorySource,
    replica_labels: Vec<String>,
    cluster_label: String,
    shard: Option<Shard>,
    /// How long a source may be absent before windows proceed without it; `None`: never.
    grace: Option<Duration>,
    /// The run's clock, unix seconds (set by `start`).
    now: i64,
    /// What the run expects, fixed by `start`; `None` when the endpoint cannot tell.
    expected: Option<Vec<Expected>>,
    /// Warnings already given this run (one per source and kind).
    told: Mutex<BTreeSet<String>>,
    /// The sources the last check found missing (refused, or absent past the grace), with
    /// their clusters: what the run's metrics report.
    missing: Mutex<BTreeMap<String, String>>,
}

/// A source the run expects.
#[derive(Debug, Clone)]
struct Expected {
    labels: Labels,
    /// The earliest data known of it, milliseconds.
    first_ms: i64,
    /// The end of the last exported window it served (unix seconds), when the state knows.
    last_exported: Option<i64>,
    /// When it was last served live (a store holding its present; unix seconds by the run's
    /// clock), else the end of its newest data in a store.
    live_at: i64,
    /// The same as the state remembers it: before this run.
    live_before: Option<i64>,
    /// Its replicas the state remembers, with when each last served.
    replicas: BTreeMap<String, i64>,
}

/// What a check found for a batch of windows.
#[derive(Debug)]
pub struct Verdict {
    /// How many leading windows every expected source covers.
    pub complete: usize,
    /// Why the next window is refused (retryable: the source may be back).
    pub refused: Option<SourceError>,
    /// What the endpoint served at the check, to remember with the exported windows.
    pub inventory: Inventory,
}

impl Verdict {
    /// Every window complete, for a run that checks nothing.
    pub fn all(windows: usize) -> Self {
        Verdict {
            complete: windows,
            refused: None,
            inventory: Inventory::default(),
        }
    }
}

impl Completeness {
    pub fn new(
        source: InventorySource,
        replica_labels: Vec<String>,
        cluster_label: String,
        shard: Option<Shard>,
        grace: Option<Duration>,
    ) -> Self {
        Completeness {
            source,
            replica_labels,
            cluster_label,
            shard,
            grace,
            now: 0,
            expected: None,
            told: Mutex::new(BTreeSet::new()),
            missing: Mutex::new(BTreeMap::new()),
        }
    }

    /// Fixes what the run started at `now` (unix seconds) expects: the sources `remembered`
    /// (the state's) and those the endpoint serves now. An endpoint that cannot tell what it
    /// serves is not checked.
    pub async fn start(
        &mut self,
        remembered: &BTreeMap<String, SourceSeen>,
        now: i64,
    ) -> Result<(), SourceError> {
        self.now = now;
        let Some(inventory) = self.source.fetch(&self.replica_labels).await? else {
            info!(
                "the endpoint does not tell which stores it serves (no Info service or stores API): a store dropped by it cannot be noticed"
            );
            return Ok(());
        };
        if inventory.coarse && !inventory.served.is_empty() {
            warn!(
                "the endpoint tells its stores' label sets but not each TSDB's time range (a Thanos Querier before v0.32, stores older than it, or /api/v1/stores): a dropped store stays unnoticed while another announces its labels; the wait for late data (WATERMARK_METRIC) still holds a cluster whose samples stop"
            );
        }
        self.expect(remembered, &inventory);
        Ok(())
    }

    /// The sources the run expects, from the state's and those served now.
    fn expect(&mut self, remembered: &BTreeMap<String, SourceSeen>, inventory: &Inventory) {
        let mut expected: BTreeMap<String, Expected> = remembered
            .iter()
            .map(|(key, s)| {
                let e = Expected {
                    labels: Labels::from_pairs(s.labels.clone()),
                    first_ms: s.first_ms,
                    last_exported: Some(s.last),
                    live_at: s.live_at,
                    live_before: Some(s.live_at),
                    replicas: s.replicas.clone(),
                };
                (key.clone(), e)
            })
            .collect();
        for s in &inventory.served {
            let e = expected
                .entry(s.labels.to_string())
                .or_insert_with(|| Expected {
                    labels: s.labels.clone(),
                    first_ms: s.min_time,
                    last_exported: None,
                    live_at: i64::MIN,
                    live_before: None,
                    replicas: BTreeMap::new(),
                });
            e.first_ms = e.first_ms.min(s.min_time);
            let newest = if self.live(s) {
                self.now
            } else {
                s.max_time / 1000
            };
            e.live_at = e.live_at.max(newest.min(self.now));
        }
        let mine: Vec<Expected> = expected
            .into_values()
            .filter(|e| self.owns(&e.labels))
            .collect();
        info!(
            sources = mine.len(),
            served = inventory.served.len(),
            grace = %self.grace.map_or_else(|| "never".into(), |g| format!("{}s", g.as_secs())),
            "completeness: sources expected"
        );
        self.expected = Some(mine);
    }

    /// Whether this shard exports the source's cluster (a source without the cluster label
    /// may hold any cluster's series).
    fn owns(&self, labels: &Labels) -> bool {
        match (self.cluster(labels), self.shard) {
            (Some(c), Some(shard)) => shard.owns(c),
            _ => true,
        }
    }

    /// Whether a store holds the source's present: its range reaches the run's clock.
    fn live(&self, s: &Served) -> bool {
        s.max_time.saturating_add(GAP_TOLERANCE_MS) >= self.now.saturating_mul(1000)
    }

    fn cluster<'l>(&self, labels: &'l Labels) -> Option<&'l str> {
        Some(labels.get(&self.cluster_label)).filter(|c| !c.is_empty())
    }

    /// Checks `windows` (starts, seconds, `time_frame` long) against what the endpoint serves
    /// now.
    pub async fn check(&self, windows: &[i64], time_frame: i64) -> Result<Verdict, SourceError> {
        let inventory = match &self.expected {
            Some(_) => self.source.fetch(&self.replica_labels).await?,
            None => None,
        };
        Ok(self.verdict(windows, time_frame, inventory))
    }

    /// The verdict on `windows` given what the endpoint serves (`None`: it cannot tell).
    fn verdict(&self, windows: &[i64], time_frame: i64, inventory: Option<Inventory>) -> Verdict {
        let (Some(expected), Some(inventory)) = (&self.expected, inventory) else {
            return Verdict::all(windows.len());
        };
        for (k, &w) in windows.iter().enumerate() {
            let missing = self.uncovered(expected, &inventory, w, time_frame);
            if !missing.is_empty() {
                return Verdict {
                    complete: k,
                    refused: Some(SourceError::Incomplete {
                        missing: missing.join("; "),
                        grace: self.grace_text(),
                    }),
                    inventory,
                };
            }
        }
        Verdict {
            complete: windows.len(),
            refused: None,
            inventory,
        }
    }

    fn grace_text(&self) -> String {
        match self.grace {
            Some(g) => format!("ABSENT_CLUSTER_GRACE={}s", g.as_secs()),
            None => "never: ABSENT_CLUSTER_GRACE=0".into(),
        }
    }

    /// The expected sources no queryable store covers window `w` for, described.
    fn uncovered(
        &self,
        expected: &[Expected],
        inventory: &Inventory,
        w: i64,
        time_frame: i64,
    ) -> Vec<String> {
        let (from, to) = (w * 1000, (w + time_frame) * 1000 - 1);
        let mut out = Vec::new();
        for e in expected {
            if e.first_ms > to {
                continue; // its data begins after the window
            }
            let all: Vec<&Served> = inventory
                .served
                .iter()
                .filter(|s| s.labels == e.labels)
                .collect();
            let served: Vec<&Served> = all
                .iter()
                .copied()
                .filter(|s| {
                    s.max_time.saturating_add(GAP_TOLERANCE_MS) >= from
                        && s.min_time <= to.saturating_add(GAP_TOLERANCE_MS)
                })
                .collect();
            if covers(&served, from.max(e.first_ms), to) {
                self.replicas(e, &served);
                continue;
            }
            let what = self.describe(e);
            self.missing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    e.labels.to_string(),
                    self.cluster(&e.labels).unwrap_or_default().to_string(),
                );
            let absence = Absence::of(e, &all, from, to);
            if self
                .grace
                .is_some_and(|g| absence.longer_than(g, e, self.now, to))
            {
                if self.tell(&format!("absent {what}")) {
                    warn!(
                        source = %e.labels,
                        last_served = %rfc3339(e.live_at),
                        grace_s = self.grace.map_or(0, |g| g.as_secs()),
                        "{what}: no queryable store holds its data for the window at {} and it has been absent for longer than ABSENT_CLUSTER_GRACE: exporting without it (it is expected again as soon as a store serves it; once a store holding the missing hours is back, `export --from --to` writes them again)",
                        rfc3339(w)
                    );
                }
                continue;
            }
            out.push(match absence.until_ms {
                Some(back) => format!(
                    "{what} for this window (its data resumes at {}; no queryable store holds it since {})",
                    rfc3339(back / 1000),
                    rfc3339(absence.since_ms / 1000)
                ),
                None => format!(
                    "{what} (no data served since {}; last served {}, {} ago)",
                    rfc3339(absence.since_ms / 1000),
                    rfc3339(e.live_at),
                    ago(self.now - e.live_at)
                ),
            });
        }
        out
    }

    /// Warns once per run when a replica the state remembers serves no more.
    fn replicas(&self, e: &Expected, served: &[&Served]) {
        let now: BTreeSet<&str> = served.iter().map(|s| s.replica.as_str()).collect();
        let gone: Vec<&str> = e
            .replicas
            .iter()
            .filter(|(r, last)| {
                !now.contains(r.as_str())
                    && self
                        .grace
                        .is_none_or(|g| self.now - **last <= g.as_secs() as i64)
            })
            .map(|(r, _)| r.as_str())
            .collect();
        if gone.is_empty() || !self.tell(&format!("replica {}", e.labels)) {
            return;
        }
        let serving: Vec<&str> = now.into_iter().collect();
        warn!(
            source = %e.labels,
            missing = gone.join(" "),
            serving = serving.join(" "),
            "{}: a replica of the HA pair is missing, exporting from the others",
            self.describe(e)
        );
    }

    fn describe(&self, e: &Expected) -> String {
        match self.cluster(&e.labels) {
            Some(c) => format!("cluster {c} ({})", e.labels),
            None => format!("source {}", e.labels),
        }
    }

    /// The sources found missing this run, with their clusters.
    pub fn missing_sources(&self) -> Vec<(String, String)> {
        let m = self.missing.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(s, c)| (s.clone(), c.clone())).collect()
    }

    /// Whether to give the warning `key`: not yet given this run.
    fn tell(&self, key: &str) -> bool {
        self.told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string())
    }

    /// Remembers in `sources` the sources that served exported window `w` and could hold the
    /// data of its clusters with series (`seen`); forgets those retired for a month.
    pub fn remember(
        &self,
        sources: &mut BTreeMap<String, SourceSeen>,
        inventory: &Inventory,
        (w, time_frame): (i64, i64),
        seen: &BTreeSet<String>,
    ) {
        let (from, to) = (w * 1000, (w + time_frame) * 1000 - 1);
        let end = w + time_frame;
        for s in &inventory.served {
            if s.max_time < from || s.min_time > to || !self.owns(&s.labels) {
                continue;
            }
            let had_data = match self.cluster(&s.labels) {
                Some(c) => seen.contains(c),
                None => !seen.is_empty(),
            };
            if !had_data {
                continue;
            }
            let e = sources
                .entry(s.labels.to_string())
                .or_insert_with(|| SourceSeen {
                    labels: s
                        .labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                    first_ms: s.min_time,
                    last: end,
                    live_at: i64::MIN,
                    replicas: BTreeMap::new(),
                });
            e.first_ms = e.first_ms.min(s.min_time);
            e.last = e.last.max(end);
            if self.live(s) {
                e.live_at = e.live_at.max(self.now);
            }
            if !s.replica.is_empty() {
                let r = e.replicas.entry(s.replica.clone()).or_insert(end);
                *r = (*r).max(end);
            }
        }
        if let Some(g) = self.grace {
            let forget = g.as_secs() as i64 + 30 * 86_400;
            sources.retain(|_, s| self.now - s.live_at.max(s.last) <= forget);
        }
    }
}

/// A source's absence around a window it does not cover, milliseconds.
struct Absence {
    /// The end of its last data before the window (a store's range, the last exported window
    /// it served), else the window's start.
    since_ms: i64,
    /// The start of its next data after the window, when a store serves it again.
    until_ms: Option<i64>,
}

impl Absence {
    fn of(e: &Expected, all: &[&Served], from: i64, to: i64) -> Self {
        let since_ms = all
            .iter()
            .map(|s| s.max_time)
            .chain(e.last_exported.map(|t| t * 1000))
            .filter(|&t| t <= from)
            .max()
            .unwrap_or(from);
        let until_ms = all.iter().map(|s| s.min_time).filter(|&t| t > to).min();
        Absence { since_ms, until_ms }
    }

    /// Whether the absence outlasted `grace` by the clock `now` (seconds): the source has not
    /// been served live for that long; or it is back, but was gone that long before, or the
    /// window's data has not come for that long after the window ended (`to`, ms), so that it
    /// no longer exists (a Prometheus restarted empty).
    fn longer_than(&self, grace: Duration, e: &Expected, now: i64, to: i64) -> bool {
        let grace = grace.as_secs() as i64;
        match self.until_ms {
            Some(_) => now - to / 1000 > grace || e.live_before.is_some_and(|t| now - t > grace),
            None => now - e.live_at > grace,
        }
    }
}

/// The gap between two ranges of one source that still counts as covered, milliseconds: a
/// block's range ends at its last sample and the next one starts at its first, so the blocks
/// of a healthy store leave gaps of up to a scrape interval (a dropped store leaves hours).
const GAP_TOLERANCE_MS: i64 = 5 * 60_000;

/// Whether the union of `served` ranges covers `[from, to]` (milliseconds, inclusive), gaps
/// of up to `GAP_TOLERANCE_MS` apart.
fn covers(served: &[&Served], from: i64, to: i64) -> bool {
    let mut ranges: Vec<(i64, i64)> = served.iter().map(|s| (s.min_time, s.max_time)).collect();
    ranges.sort_unstable();
    let mut reached = from; // everything before is covered
    for (min, max) in ranges {
        if min > reached.saturating_add(GAP_TOLERANCE_MS) {
            break;
        }
        if max.saturating_add(GAP_TOLERANCE_MS) >= to {
            return true;
        }
        reached = reached.max(max.saturating_add(1));
    }
    from > to
}

/// A duration for people: `35m`, `3h5m`, `2d4h`.
fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests;
