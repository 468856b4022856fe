//! The Series requests of a batch of windows, planned from the catalog and from what earlier
//! requests returned: pure functions, no I/O.
//!
//! Entries over the same metric and range share a stream (`stream_groups`); a group that keeps
//! the cluster label is asked cluster by cluster unless its clusters together fit the request
//! budget; small groups over the same range and matchers share a request (`tasks`); and a
//! request covers as many windows as the scratch budget holds (`windows_per_request`).

use std::collections::{BTreeMap, HashMap};

use super::ClusterScope;
use crate::engine::Plan;
use crate::model::{MatchKind, Matcher, Steps};
use crate::source::SourceError;

/// The output points per window (series times steps, 16 bytes each while held) up to which
/// (metric, cluster) pairs are asked together by default (REQUEST_POINTS). A tenant of ~22,000
/// series then asks a window in a few requests; a result larger than this is asked alone,
/// one cluster at a time, so a large tenant's peak stays that of its largest files. The
/// windows of a request are evaluated one at a time (`Spill`), so this bounds memory whatever
/// the number of windows a request covers.
pub const REQUEST_POINTS: u64 = 1 << 19;

/// The key `Sizes` and the untrimmed set know a request's clusters by: `*` for all of them.
pub(super) const ALL_CLUSTERS: &str = "*";

/// One window to evaluate: its start (seconds) and every entry's steps.
pub(super) struct WindowSpec {
    pub start: i64,
    pub steps: Vec<Steps>,
}

/// Entries over the same metric and the same range (relative to their window) share one
/// stream, asking only for the matchers they all have in common.
pub(super) struct Group {
    pub entries: Vec<usize>,
    pub matchers: Vec<Matcher>,
    /// The selected range relative to the window's start: groups asked together share it.
    pub range: (i64, i64),
    /// Every entry keeps the cluster label, so the group can be asked cluster by cluster.
    pub per_cluster: bool,
}

impl Group {
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| is_metric_name(m))
            .map(|m| m.value.as_str())
    }

    fn other_matchers(&self) -> impl Iterator<Item = &Matcher> {
        self.matchers.iter().filter(|m| !is_metric_name(m))
    }
}

fn is_metric_name(m: &Matcher) -> bool {
    m.name == crate::model::METRIC_NAME && matches!(m.kind, MatchKind::Eq)
}

/// The cluster matchers of a batch: one per cluster, and one for them all (`None`: every
/// series; with a shard, only its clusters).
pub(super) struct Scopes {
    pub each: Vec<Matcher>,
    pub all: Option<Matcher>,
}

impl Scopes {
    /// One matcher per cluster among `values` (the cluster label's values the store knows)
    /// that the shard owns (of those asked for, with `only`), the default cluster's matching
    /// series without the label too.
    pub fn of(scope: &ClusterScope, values: &[String]) -> Result<Scopes, SourceError> {
        let owns = |c: &str| {
            scope.shard.is_none_or(|s| s.owns(c))
                && scope.only.as_ref().is_none_or(|o| o.contains(c))
        };
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
        // without a shard or a choice of clusters, all clusters are every series
        let all = match (scope.shard, &scope.only) {
            (None, None) => None,
            _ => {
                let mut values = owned;
                if default {
                    values.push(&scope.default_cluster);
                }
                Some(regex(&crate::shard::alternatives(&values, default))?)
            }
        };
        Ok(Scopes { each, all })
    }
}

/// What each (entry, cluster or `ALL_CLUSTERS`) asked so far gave per window: output series
/// (kept as series, not points, so that instant queries and windows measure alike), and the
/// chunk bytes a request sets aside for it (its request's, shared by output points).
#[derive(Default)]
pub(super) struct Sizes {
    pub series: HashMap<(usize, String), u64>,
    pub bytes: HashMap<(usize, String), u64>,
}

/// What requests gave one entry in one scope (a cluster, or `*` for all of them), per window:
/// its output series and the chunk bytes set aside for it. Kept in the state between runs, so
/// that a run's first window is packed like the later ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestSize {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Request sizes by entry name, then scope.
pub type Packing = BTreeMap<String, BTreeMap<String, RequestSize>>;

impl Sizes {
    /// The sizes by entry name (`names`: the catalog's, in entry order).
    pub fn packing(&self, names: &[String]) -> Packing {
        fn at<'p>(
            out: &'p mut Packing,
            names: &[String],
            (e, scope): &(usize, String),
        ) -> &'p mut RequestSize {
            out.entry(names[*e].clone())
                .or_default()
                .entry(scope.clone())
                .or_default()
        }
        let mut out = Packing::new();
        for (k, n) in &self.series {
            at(&mut out, names, k).series = Some(*n);
        }
        for (k, b) in &self.bytes {
            at(&mut out, names, k).bytes = Some(*b);
        }
        out
    }

    /// Sizes from `packing`, for the entries of `names` it knows.
    pub fn from_packing(packing: &Packing, names: &[String]) -> Self {
        let mut sizes = Sizes::default();
        for (e, name) in names.iter().enumerate() {
            for (scope, size) in packing.get(name).into_iter().flatten() {
                let key = (e, scope.clone());
                if let Some(n) = size.series {
                    sizes.series.insert(key.clone(), n);
                }
                if let Some(b) = size.bytes {
                    sizes.bytes.insert(key, b);
                }
            }
        }
        sizes
    }
}

/// What one request over `windows` windows gave an entry: its output series over all of them,
/// and its steps per window.
pub(super) struct EntryOutput {
    pub entry: usize,
    pub series: u64,
    pub steps: u64,
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
    pub fn bytes(&self, group: &Group, key: &str) -> Option<u64> {
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

    /// Records what a request in scope `key` over `windows` windows gave: each entry's output
    /// series per window, and the request's chunk `bytes` per window, shared among its
    /// entries by output points (evenly when there are none).
    pub fn learn(&mut self, key: &str, outputs: &[EntryOutput], bytes: u64, windows: u64) {
        let total: u64 = outputs.iter().map(|o| o.series * o.steps).sum();
        for o in outputs {
            let k = (o.entry, key.to_string());
            self.series.insert(k.clone(), o.series.div_ceil(windows));
            let share = (u128::from(bytes) * u128::from(o.series * o.steps))
                .checked_div(u128::from(total))
                .map_or(bytes / outputs.len() as u64, |b| b as u64);
            self.bytes.insert(k, share.div_ceil(windows));
        }
    }
}

/// One Series request: groups over some windows, for one cluster or for all.
pub(super) struct Task<'g> {
    pub groups: Vec<&'g Group>,
    pub windows: Vec<usize>,
    pub scope: Option<Matcher>,
    /// `ALL_CLUSTERS` or the one cluster's matcher value.
    pub scope_key: String,
}

impl Task<'_> {
    /// The request's matchers: a group's own, or for several groups their metric names and
    /// the matchers they share (`tasks` packs only groups whose other matchers are equal).
    pub fn matchers(&self) -> Result<Vec<Matcher>, SourceError> {
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

    /// Keys of `Sizes` and of the untrimmed set this task covers.
    pub fn keys(&self) -> impl Iterator<Item = (usize, String)> + '_ {
        self.groups
            .iter()
            .map(|g| (g.entries[0], self.scope_key.clone()))
    }

    /// The task's entries, group by group.
    pub fn entries(&self) -> Vec<usize> {
        self.groups
            .iter()
            .flat_map(|g| g.entries.iter().copied())
            .collect()
    }
}

/// Streams that cover the catalog in one window: entries over the same metric and time
/// range share one stream (requests and limits of CPU and memory cost one stream per
/// metric, not four), asking only for the matchers they all have in common.
pub(super) fn stream_groups(
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
/// - the windows of a request: as many as the scratch budget allows (`windows_per_request`),
///   each evaluated from the chunks a request for it alone would get (`dedup::cut_to`).
///
/// `budget`: output points per window (see `REQUEST_POINTS`). Unknown sizes (a run's first
/// window) are asked alone, cluster by cluster.
pub(super) fn tasks<'g>(
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
pub(super) fn windows_per_request(budget: u64, size: Option<u64>) -> usize {
    size.map_or(1, |n| (budget / n.max(1)).max(1) as usize)
}

/// The smallest start and largest end of some ranges (ms).
pub(super) fn span(ranges: impl IntoIterator<Item = (i64, i64)>) -> (i64, i64) {
    ranges
        .into_iter()
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
