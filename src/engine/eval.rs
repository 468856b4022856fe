//! Streaming evaluation of a [`Plan`]: series are pushed one at a time and folded into the
//! output (or the first aggregation's accumulators), so memory follows the output.

use std::collections::hash_map::Entry;
// Fx, not SipHash: every series of a window is hashed by its labels, which come from the
// stores, not from anyone aiming collisions at the exporter
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use thiserror::Error;

use super::aggregate::Aggregator;
use super::functions::range_fn;
use super::plan::{ArithOp, Leaf, Plan, Stage};
use crate::model::{Labels, Sample, Series, Steps, is_stale};

/// Why a window could not be evaluated.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error("vector cannot contain metrics with the same labelset: {0} (as Prometheus refuses it)")]
    DuplicateLabels(Labels),
}

impl Plan {
    /// A streaming evaluation of this plan over `steps`.
    pub fn evaluator(&self, steps: Steps, lookback_ms: i64) -> Evaluator<'_> {
        let first_agg = self
            .stages
            .iter()
            .position(|s| matches!(s, Stage::Aggregate { .. }));
        Evaluator {
            plan: self,
            steps,
            lookback_ms,
            first_agg,
            agg: first_agg.map(|i| match &self.stages[i] {
                Stage::Aggregate { op, grouping } => {
                    Aggregator::new(*op, grouping.clone(), steps.n)
                }
                _ => unreachable!("first_agg points at an aggregation"),
            }),
            plain: Vec::new(),
            plain_index: HashMap::default(),
            leaf_names: self.metric_name().is_none().then(HashSet::default),
            values: vec![None; steps.n],
            window: Vec::new(),
        }
    }
}

/// Evaluates one plan over one window, series by series.
pub struct Evaluator<'p> {
    plan: &'p Plan,
    steps: Steps,
    lookback_ms: i64,
    first_agg: Option<usize>,
    agg: Option<Aggregator>,
    // without aggregation: the output series in arrival order, and their index by labels
    plain: Vec<Series>,
    plain_index: HashMap<Labels, usize>,
    // leaf output labels seen, to refuse duplicates as Prometheus does when the function
    // drops the metric name and the selector does not fix it
    leaf_names: Option<HashSet<Labels>>,
    values: Vec<Option<f64>>,
    window: Vec<Sample>,
}

impl Evaluator<'_> {
    /// Folds one input series (deduplicated samples within the plan's select range, in time
    /// order) into the result. Series must come in label order, as the StoreAPI sends them.
    pub fn push(&mut self, labels: &Labels, samples: &[Sample]) -> Result<(), EvalError> {
        debug_assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
        let mut values = std::mem::take(&mut self.values);
        let any = self.leaf(samples, &mut values);
        if !any {
            self.values = values;
            return Ok(());
        }
        let drop_name = matches!(self.plan.leaf, Leaf::Range(f, _) if f.drops_name());
        if let Some(seen) = &mut self.leaf_names {
            let leaf_labels = if drop_name {
                labels.without_name()
            } else {
                labels.clone()
            };
            if !seen.insert(leaf_labels.clone()) {
                self.values = values;
                return Err(EvalError::DuplicateLabels(leaf_labels));
            }
        }
        let end = self.first_agg.unwrap_or(self.plan.stages.len());
        if end == 0
            && let Some(agg) = &mut self.agg
        {
            // the aggregation picks its labels straight from the input series
            agg.push_projected(labels, drop_name, &values);
            self.values = values;
            return Ok(());
        }
        let mut labels = if drop_name {
            labels.without_name()
        } else {
            labels.clone()
        };
        for stage in &self.plan.stages[..end] {
            apply_map(stage, &mut labels, &mut values);
        }
        let pushed = match &mut self.agg {
            Some(agg) => {
                agg.push(&labels, &values);
                Ok(())
            }
            None => add_plain(&mut self.plain, &mut self.plain_index, labels, &values),
        };
        // the step buffer is kept for the next series, whatever the outcome
        self.values = values;
        pushed
    }

    /// The first step when the leaf is an instant selector: no step then reads a sample older
    /// than the newest one at or before it.
    pub fn instant_from(&self) -> Option<i64> {
        matches!(self.plan.leaf, Leaf::Instant).then_some(self.steps.start)
    }

    /// The result: series with at least one value, sorted by labels.
    pub fn finish(self) -> Result<Vec<Series>, EvalError> {
        let mut out = match (self.agg, self.first_agg) {
            (None, _) => self.plain,
            (Some(agg), Some(first)) => {
                let mut cur = agg.finish();
                for stage in &self.plan.stages[first + 1..] {
                    cur = match stage {
                        Stage::Aggregate { op, grouping } => {
                            let mut a = Aggregator::new(*op, grouping.clone(), self.steps.n);
                            for s in &cur {
                                a.push(&s.labels, &s.values);
                            }
                            a.finish()
                        }
                        map => {
                            let mut next = Vec::new();
                            let mut index = HashMap::default();
                            for mut s in cur {
                                apply_map(map, &mut s.labels, &mut s.values);
                                add_plain(&mut next, &mut index, s.labels, &s.values)?;
                            }
                            next
                        }
                    };
                }
                cur
            }
            (Some(_), None) => unreachable!("an aggregator exists only with its stage"),
        };
        out.retain(|s| s.values.iter().any(Option::is_some));
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Computes the leaf's value at every step; false when there is none at all.
    fn leaf(&mut self, samples: &[Sample], out: &mut [Option<f64>]) -> bool {
        let mut any = false;
        let (semantics, closed) = (self.plan.semantics, self.plan.semantics.closed_left());
        match self.plan.leaf {
            Leaf::Instant => {
                // newest sample with t <= step and t > step - lookback
                let mut j = 0usize; // samples[..j] have t <= step
                for (i, slot) in out.iter_mut().enumerate() {
                    let ts = self.steps.at(i);
                    while j < samples.len() && samples[j].0 <= ts {
                        j += 1;
                    }
                    *slot = None;
                    if j > 0 {
                        let (t, v) = samples[j - 1];
                        let inside =
                            t > ts - self.lookback_ms || (closed && t == ts - self.lookback_ms);
                        if inside && !is_stale(v) {
                            *slot = Some(v);
                            any = true;
                        }
                    }
                }
            }
            Leaf::Range(func, range) => {
                // range selections drop staleness markers; most series have none, and then
                // the windows are plain sub-slices
                let stale = samples.iter().any(|&(_, v)| is_stale(v));
                let mut lo = 0usize;
                let mut hi = 0usize;
                for (i, slot) in out.iter_mut().enumerate() {
                    let ts = self.steps.at(i);
                    while hi < samples.len() && samples[hi].0 <= ts {
                        hi += 1;
                    }
                    while lo < hi
                        && (samples[lo].0 < ts - range || (!closed && samples[lo].0 == ts - range))
                    {
                        lo += 1;
                    }
                    *slot = if stale {
                        self.window.clear();
                        self.window.extend(
                            samples[lo..hi]
                                .iter()
                                .copied()
                                .filter(|&(_, v)| !is_stale(v)),
                        );
                        range_fn(func, &self.window, ts, range, semantics)
                    } else {
                        range_fn(func, &samples[lo..hi], ts, range, semantics)
                    };
                    any |= slot.is_some();
                }
            }
        }
        any
    }
}

fn add_plain(
    out: &mut Vec<Series>,
    index: &mut HashMap<Labels, usize>,
    labels: Labels,
    values: &[Option<f64>],
) -> Result<(), EvalError> {
    match index.entry(labels) {
        Entry::Vacant(e) => {
            let labels = e.key().clone();
            e.insert(out.len());
            out.push(Series {
                labels,
                values: values.to_vec(),
            });
        }
        Entry::Occupied(e) => {
            // Prometheus merges series that became equal if they never overlap in time
            let s = &mut out[*e.get()];
            for (a, b) in s.values.iter_mut().zip(values) {
                if let Some(v) = b {
                    if a.is_some() {
                        return Err(EvalError::DuplicateLabels(e.key().clone()));
                    }
                    *a = Some(*v);
                }
            }
        }
    }
    Ok(())
}

fn apply_map(stage: &Stage, labels: &mut Labels, values: &mut [Option<f64>]) {
    match stage {
        Stage::LabelReplace {
            dst,
            replacement,
            src,
            regex,
        } => {
            let value = labels.get(src).to_string();
            if let Some(caps) = regex.captures(&value) {
                let mut res = String::new();
                caps.expand(replacement, &mut res);
                labels.set(dst, &res);
            }
        }
        Stage::Arith {
            op,
            scalar,
            scalar_left,
        } => {
            *labels = labels.without_name();
            for v in values.iter_mut().flatten() {
                let (l, r) = if *scalar_left {
                    (*scalar, *v)
                } else {
                    (*v, *scalar)
                };
                *v = match op {
                    ArithOp::Add => l + r,
                    ArithOp::Sub => l - r,
                    ArithOp::Mul => l * r,
                    ArithOp::Div => l / r,
                    ArithOp::Mod => l % r,
                    ArithOp::Pow => l.powf(r),
                };
            }
        }
        Stage::Aggregate { .. } => unreachable!("aggregations are not maps"),
    }
}
