//! Aggregation over groups of series, as Prometheus' `groupedAggregation` does it (floats).

use rustc_hash::FxHashMap;

use super::functions::{KahanMean, kahan_inc};
use super::plan::{AggOp, Grouping};
use crate::model::{Labels, METRIC_NAME, Series};

/// Per-step accumulator of one group (Prometheus' groupedAggregation, floats only).
#[derive(Clone, Copy, Default)]
struct Acc {
    seen: bool,
    value: f64,
    c: f64,
    mean: KahanMean,
    count: f64,
}

pub(super) struct Aggregator {
    op: AggOp,
    grouping: Grouping,
    n: usize,
    // groups in order of first appearance, as Prometheus orders its result
    groups: Vec<(Labels, Vec<Acc>)>,
    // the newest group of each hash of their labels, and for each group the one before it
    // with the same hash (collisions are told apart by comparing): most series of a window
    // start a group of their own, and a list per hash was one more allocation each
    index: FxHashMap<u64, usize>,
    same_hash: Vec<Option<usize>>,
}

impl Aggregator {
    pub(super) fn new(op: AggOp, grouping: Grouping, n: usize) -> Self {
        Aggregator {
            op,
            grouping,
            n,
            groups: Vec::new(),
            index: FxHashMap::default(),
            same_hash: Vec::new(),
        }
    }

    /// Whether the group key keeps label `name` of a series.
    fn keeps(&self, name: &str, drop_name: bool) -> bool {
        if name == METRIC_NAME && drop_name {
            return false;
        }
        match &self.grouping {
            Grouping::By(names) => names.iter().any(|n| n == name),
            Grouping::Without(names) => name != METRIC_NAME && !names.iter().any(|n| n == name),
        }
    }

    /// The group of a series, created on first sight.
    fn group_of(&mut self, labels: &Labels, drop_name: bool) -> usize {
        use std::hash::{Hash, Hasher};
        // not SipHash: every series of a window is hashed here, and no group key is chosen
        // by anyone who could aim collisions at it (they are told apart below anyway)
        let mut h = rustc_hash::FxHasher::default();
        for (k, v) in labels.iter().filter(|(k, _)| self.keeps(k, drop_name)) {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        let hash = h.finish();
        let mut candidate = self.index.get(&hash).copied();
        while let Some(gi) = candidate {
            let mut key = self.groups[gi].0.iter();
            let mut mine = labels.iter().filter(|(k, _)| self.keeps(k, drop_name));
            if key.by_ref().zip(mine.by_ref()).all(|(a, b)| a == b)
                && key.next().is_none()
                && mine.next().is_none()
            {
                return gi;
            }
            candidate = self.same_hash[gi];
        }
        let key = labels.filtered(|k| self.keeps(k, drop_name));
        self.groups.push((key, vec![Acc::default(); self.n]));
        let gi = self.groups.len() - 1;
        self.same_hash.push(self.index.insert(hash, gi));
        gi
    }

    pub(super) fn push(&mut self, labels: &Labels, values: &[Option<f64>]) {
        self.push_projected(labels, false, values);
    }

    /// Folds a series in; with `drop_name`, its metric name does not count.
    pub(super) fn push_projected(
        &mut self,
        labels: &Labels,
        drop_name: bool,
        values: &[Option<f64>],
    ) {
        let gi = self.group_of(labels, drop_name);
        let op = self.op;
        let accs = &mut self.groups[gi].1;
        for (acc, v) in accs.iter_mut().zip(values) {
            let Some(f) = *v else { continue };
            if !acc.seen {
                *acc = Acc {
                    seen: true,
                    value: f,
                    c: 0.0,
                    mean: KahanMean::new(f),
                    count: 1.0,
                };
                continue;
            }
            match op {
                AggOp::Sum => (acc.value, acc.c) = kahan_inc(f, acc.value, acc.c),
                AggOp::Avg => acc.mean.add(f),
                AggOp::Max => {
                    if acc.value < f || acc.value.is_nan() {
                        acc.value = f;
                    }
                }
                AggOp::Min => {
                    if acc.value > f || acc.value.is_nan() {
                        acc.value = f;
                    }
                }
                AggOp::Count => acc.count += 1.0,
            }
        }
    }

    pub(super) fn finish(self) -> Vec<Series> {
        let op = self.op;
        self.groups
            .into_iter()
            .map(|(labels, accs)| Series {
                labels,
                values: accs
                    .into_iter()
                    .map(|a| {
                        a.seen.then(|| match op {
                            AggOp::Sum => a.value + a.c,
                            AggOp::Avg => a.mean.value(),
                            AggOp::Count => a.count,
                            AggOp::Max | AggOp::Min => a.value,
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}
