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

impl Acc {
    /// A step's accumulator after its first value.
    fn first(f: f64) -> Self {
        Acc {
            seen: true,
            value: f,
            c: 0.0,
            mean: KahanMean::new(f),
            count: 1.0,
        }
    }

    fn add(&mut self, op: AggOp, f: f64) {
        if !self.seen {
            *self = Acc::first(f);
            return;
        }
        match op {
            AggOp::Sum => (self.value, self.c) = kahan_inc(f, self.value, self.c),
            AggOp::Avg => self.mean.add(f),
            AggOp::Max => {
                if self.value < f || self.value.is_nan() {
                    self.value = f;
                }
            }
            AggOp::Min => {
                if self.value > f || self.value.is_nan() {
                    self.value = f;
                }
            }
            AggOp::Count => self.count += 1.0,
        }
    }

    fn result(&self, op: AggOp) -> Option<f64> {
        self.seen.then(|| match op {
            AggOp::Sum => self.value + self.c,
            AggOp::Avg => self.mean.value(),
            AggOp::Count => self.count,
            AggOp::Max | AggOp::Min => self.value,
        })
    }
}

/// A group's steps. Most series of a window start a group of their own and no other joins
/// it: such a group keeps the series' values (a tenth of the accumulators' bytes) until a
/// second series comes.
enum Accumulated {
    One(Vec<Option<f64>>),
    Many(Vec<Acc>),
}

pub(super) struct Aggregator {
    op: AggOp,
    grouping: Grouping,
    n: usize,
    // groups in order of first appearance, as Prometheus orders its result
    groups: Vec<(Labels, Accumulated)>,
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

    /// The group of a series, `None` when it starts one (with `values`).
    fn group_of(
        &mut self,
        labels: &Labels,
        drop_name: bool,
        values: &[Option<f64>],
    ) -> Option<usize> {
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
                return Some(gi);
            }
            candidate = self.same_hash[gi];
        }
        let key = labels.filtered(|k| self.keeps(k, drop_name));
        debug_assert_eq!(values.len(), self.n);
        self.groups.push((key, Accumulated::One(values.to_vec())));
        let gi = self.groups.len() - 1;
        self.same_hash.push(self.index.insert(hash, gi));
        None
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
        let Some(gi) = self.group_of(labels, drop_name, values) else {
            return;
        };
        let op = self.op;
        let steps = &mut self.groups[gi].1;
        if let Accumulated::One(first) = steps {
            let accs = first
                .iter()
                .map(|v| v.map(Acc::first).unwrap_or_default())
                .collect();
            *steps = Accumulated::Many(accs);
        }
        let Accumulated::Many(accs) = steps else {
            unreachable!("a group joined by a second series keeps accumulators")
        };
        for (acc, v) in accs.iter_mut().zip(values) {
            if let Some(f) = *v {
                acc.add(op, f);
            }
        }
    }

    pub(super) fn finish(self) -> Vec<Series> {
        let op = self.op;
        self.groups
            .into_iter()
            .map(|(labels, steps)| Series {
                labels,
                values: match steps {
                    // the same arithmetic as a group of one series' accumulators
                    Accumulated::One(mut values) => {
                        for v in values.iter_mut() {
                            *v = v.and_then(|f| Acc::first(f).result(op));
                        }
                        values
                    }
                    Accumulated::Many(accs) => accs.iter().map(|a| a.result(op)).collect(),
                },
            })
            .collect()
    }
}
