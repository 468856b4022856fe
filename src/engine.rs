//! The PromQL subset evaluated in-process over StoreAPI data.
//!
//! An expression compiles into one selector and a chain of stages, innermost first:
//! a leaf (instant selector or range function) computes a series' value at every step, maps
//! (`label_replace`, arithmetic with a number) transform it, aggregations group it. Series are
//! pushed one at a time as they stream in and folded into the first aggregation's per-step
//! accumulators, so memory follows the output (groups × steps), never the input samples.
//!
//! Semantics are those of the Prometheus 3 engine inside the pinned Thanos Query: range
//! selectors select `(t - range, t]` (left-open; Prometheus 2 selected `[t - range, t]`),
//! instant selectors the newest sample in `(t - lookback, t]`, staleness markers end a series,
//! `rate`/`increase`/`delta` extrapolate as `extrapolatedRate` does, and `sum`/`avg` use the
//! same Kahan-Neumaier summation in the same series order, so results are bit-identical.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier};
use regex::Regex;
use thiserror::Error;

use crate::chunk::Sample;
use crate::labels::{Labels, METRIC_NAME, Matcher, anchored};

/// The NaN Prometheus writes as a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Why an expression cannot be evaluated by this engine.
#[derive(Debug, Error)]
pub enum CompileError {
    #[error("cannot parse: {0}")]
    Parse(String),
    #[error(
        "{0} is not supported by the in-process (gRPC) engine; evaluate this entry with --source http"
    )]
    Unsupported(String),
    #[error("invalid regular expression {0:?}: {1}")]
    Regex(String, String),
}

/// Why a window could not be evaluated.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error("vector cannot contain metrics with the same labelset: {0} (as Prometheus refuses it)")]
    DuplicateLabels(Labels),
}

/// Range functions of the subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFunc {
    Rate,
    Increase,
    Irate,
    Delta,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
}

impl RangeFunc {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "rate" => RangeFunc::Rate,
            "increase" => RangeFunc::Increase,
            "irate" => RangeFunc::Irate,
            "delta" => RangeFunc::Delta,
            "avg_over_time" => RangeFunc::AvgOverTime,
            "min_over_time" => RangeFunc::MinOverTime,
            "max_over_time" => RangeFunc::MaxOverTime,
            "sum_over_time" => RangeFunc::SumOverTime,
            "count_over_time" => RangeFunc::CountOverTime,
            "last_over_time" => RangeFunc::LastOverTime,
            _ => return None,
        })
    }

    // Prometheus keeps the metric name only for last_over_time (and first_over_time).
    fn drops_name(self) -> bool {
        self != RangeFunc::LastOverTime
    }
}

/// Aggregation operators of the subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Max,
    Min,
    Avg,
    Count,
}

/// How an aggregation groups.
#[derive(Clone, Debug)]
pub enum Grouping {
    /// `by (labels)`; no clause is `by ()`.
    By(Vec<String>),
    /// `without (labels)`; also drops the metric name.
    Without(Vec<String>),
}

/// Arithmetic between a vector and a number.
#[derive(Clone, Copy, Debug)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

/// One step after the leaf.
#[derive(Clone, Debug)]
pub enum Stage {
    LabelReplace {
        dst: String,
        replacement: String,
        src: String,
        regex: Regex,
    },
    Arith {
        op: ArithOp,
        scalar: f64,
        scalar_left: bool,
    },
    Aggregate {
        op: AggOp,
        grouping: Grouping,
    },
}

/// What the leaf computes at each step.
#[derive(Clone, Copy, Debug)]
pub enum Leaf {
    /// The newest sample within the lookback.
    Instant,
    /// A range function over `(t - range, t]`.
    Range(RangeFunc, i64),
}

/// A compiled catalog expression.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The expression as written.
    pub expr: String,
    /// The selector's matchers (the metric name as an `=` matcher).
    pub matchers: Vec<Matcher>,
    /// The leaf.
    pub leaf: Leaf,
    /// Stages after the leaf, innermost first.
    pub stages: Vec<Stage>,
    /// The function nearest the selector is rate, increase, irate or resets: Thanos Query then
    /// reads the series as a reset-free running total and shifts counters at replica switches
    /// (see `dedup`).
    pub counter_func: bool,
}

/// Evaluation steps of a window: `start`, `start + step`, … (`n` of them), milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steps {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Steps {
    /// The last evaluation timestamp.
    pub fn end(&self) -> i64 {
        self.start + self.step * (self.n as i64 - 1)
    }

    fn at(&self, i: usize) -> i64 {
        self.start + self.step * i as i64
    }
}

/// A result series: labels and one optional value per step.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

impl Plan {
    /// Parses and compiles `expr`, rejecting anything outside the subset.
    pub fn compile(expr: &str) -> Result<Plan, CompileError> {
        let ast = parser::parse(expr).map_err(CompileError::Parse)?;
        let mut stages = Vec::new();
        let mut nearest_func: Option<String> = None;
        let mut node = &ast;
        loop {
            match node {
                Expr::Paren(p) => node = &p.expr,
                Expr::Aggregate(a) => {
                    let op = match a.op.to_string().as_str() {
                        "sum" => AggOp::Sum,
                        "max" => AggOp::Max,
                        "min" => AggOp::Min,
                        "avg" => AggOp::Avg,
                        "count" => AggOp::Count,
                        other => {
                            return Err(CompileError::Unsupported(format!(
                                "the aggregation {other}()"
                            )));
                        }
                    };
                    if a.param.is_some() {
                        return Err(CompileError::Unsupported("an aggregation parameter".into()));
                    }
                    let grouping = match &a.modifier {
                        None => Grouping::By(Vec::new()),
                        Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
                        Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
                    };
                    stages.push(Stage::Aggregate { op, grouping });
                    nearest_func = Some(a.op.to_string());
                    node = &a.expr;
                }
                Expr::Binary(b) => {
                    let op = match b.op.to_string().as_str() {
                        "+" => ArithOp::Add,
                        "-" => ArithOp::Sub,
                        "*" => ArithOp::Mul,
                        "/" => ArithOp::Div,
                        "%" => ArithOp::Mod,
                        "^" => ArithOp::Pow,
                        other => {
                            return Err(CompileError::Unsupported(format!(
                                "the binary operator {other}"
                            )));
                        }
                    };
                    if b.modifier.as_ref().is_some_and(|m| m.return_bool) {
                        return Err(CompileError::Unsupported("the bool modifier".into()));
                    }
                    let (scalar, vector, scalar_left) = match (number(&b.lhs), number(&b.rhs)) {
                        (None, Some(s)) => (s, &b.lhs, false),
                        (Some(s), None) => (s, &b.rhs, true),
                        _ => {
                            return Err(CompileError::Unsupported(
                                "a binary operation between two vectors (only vector-number arithmetic is)"
                                    .into(),
                            ));
                        }
                    };
                    stages.push(Stage::Arith {
                        op,
                        scalar,
                        scalar_left,
                    });
                    // Prometheus stops looking for the selector's function at a binary
                    // expression: the hint is empty unless a function lies below it.
                    nearest_func = Some(String::new());
                    node = vector;
                }
                Expr::Call(c) if c.func.name == "label_replace" => {
                    let s = |i: usize| -> Result<String, CompileError> {
                        match c.args.args.get(i).map(|a| a.as_ref()) {
                            Some(Expr::StringLiteral(l)) => Ok(l.val.clone()),
                            _ => Err(CompileError::Unsupported(
                                "label_replace() with non-literal arguments".into(),
                            )),
                        }
                    };
                    let (dst, replacement, src, re) = (s(1)?, s(2)?, s(3)?, s(4)?);
                    let regex = anchored(&re)
                        .map_err(|e| CompileError::Regex(re.clone(), e.to_string()))?;
                    stages.push(Stage::LabelReplace {
                        dst,
                        replacement,
                        src,
                        regex,
                    });
                    nearest_func = Some("label_replace".into());
                    node = &c.args.args[0];
                }
                Expr::Call(c) => {
                    let Some(func) = RangeFunc::parse(c.func.name) else {
                        return Err(CompileError::Unsupported(format!(
                            "the function {}()",
                            c.func.name
                        )));
                    };
                    let Some(Expr::MatrixSelector(m)) = c.args.args.first().map(|a| a.as_ref())
                    else {
                        return Err(CompileError::Unsupported(format!(
                            "{}() over anything but a range selector (subqueries are not supported)",
                            c.func.name
                        )));
                    };
                    let range = m.range.as_millis() as i64;
                    nearest_func = Some(c.func.name.to_string());
                    stages.reverse();
                    return Self::finish(
                        expr,
                        &m.vs,
                        Leaf::Range(func, range),
                        stages,
                        nearest_func,
                    );
                }
                Expr::VectorSelector(vs) => {
                    stages.reverse();
                    return Self::finish(expr, vs, Leaf::Instant, stages, nearest_func);
                }
                Expr::MatrixSelector(_) => {
                    return Err(CompileError::Unsupported(
                        "a bare range selector (the result must be an instant vector)".into(),
                    ));
                }
                Expr::Subquery(_) => return Err(CompileError::Unsupported("a subquery".into())),
                Expr::Unary(_) => {
                    return Err(CompileError::Unsupported("unary minus".into()));
                }
                Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {
                    return Err(CompileError::Unsupported(
                        "an expression without a selector".into(),
                    ));
                }
                Expr::Extension(_) => return Err(CompileError::Unsupported("an extension".into())),
            }
        }
    }

    fn finish(
        expr: &str,
        vs: &parser::VectorSelector,
        leaf: Leaf,
        stages: Vec<Stage>,
        nearest_func: Option<String>,
    ) -> Result<Plan, CompileError> {
        if vs.offset.is_some() {
            return Err(CompileError::Unsupported("the offset modifier".into()));
        }
        if vs.at.is_some() {
            return Err(CompileError::Unsupported("the @ modifier".into()));
        }
        if !vs.matchers.or_matchers.is_empty() {
            return Err(CompileError::Unsupported("`or` in label matchers".into()));
        }
        let mut matchers = Vec::new();
        if let Some(name) = &vs.name {
            matchers.push(Matcher::eq(METRIC_NAME, name));
        }
        for m in &vs.matchers.matchers {
            let regex = |negate| {
                Matcher::regex(&m.name, &m.value, negate)
                    .map_err(|e| CompileError::Regex(m.value.clone(), e.to_string()))
            };
            let matcher = match &m.op {
                MatchOp::Equal => Matcher::eq(&m.name, &m.value),
                MatchOp::NotEqual => Matcher {
                    kind: crate::labels::MatchKind::Neq,
                    name: m.name.clone(),
                    value: m.value.clone(),
                },
                MatchOp::Re(_) => regex(false)?,
                MatchOp::NotRe(_) => regex(true)?,
            };
            if !(matcher.name == METRIC_NAME && vs.name.as_deref() == Some(m.value.as_str())) {
                matchers.push(matcher);
            }
        }
        let counter_func = matches!(
            nearest_func.as_deref(),
            Some("rate" | "increase" | "irate" | "resets")
        );
        Ok(Plan {
            expr: expr.to_string(),
            matchers,
            leaf,
            stages,
            counter_func,
        })
    }

    /// The metric name when the selector fixes it with `=`.
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.kind, crate::labels::MatchKind::Eq))
            .map(|m| m.value.as_str())
    }

    /// The inclusive time range `[mint, maxt]` Thanos Query selects for this expression over
    /// `steps` (Prometheus' getTimeRangesForSelector): the first step minus the lookback (or
    /// the range) plus one millisecond, to the last step.
    pub fn select_range(&self, steps: &Steps, lookback_ms: i64) -> (i64, i64) {
        let back = match self.leaf {
            Leaf::Instant => lookback_ms,
            Leaf::Range(_, r) => r,
        };
        (steps.start - back + 1, steps.end())
    }

    /// Whether every output series carries the `label` value of the input series it came
    /// from: then filtering the input by `label` filters the output the same way (the shard
    /// pushdown relies on it).
    pub fn preserves_label(&self, label: &str) -> bool {
        self.stages.iter().all(|s| match s {
            Stage::LabelReplace { dst, .. } => dst != label,
            Stage::Arith { .. } => true,
            Stage::Aggregate {
                grouping: Grouping::By(l),
                ..
            } => l.iter().any(|x| x == label),
            Stage::Aggregate {
                grouping: Grouping::Without(l),
                ..
            } => !l.iter().any(|x| x == label),
        })
    }

    /// Whether a series' labels satisfy every matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

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
            plain_index: HashMap::new(),
            leaf_names: self.metric_name().is_none().then(HashSet::new),
            values: vec![None; steps.n],
            window: Vec::new(),
            samples_in: 0,
        }
    }
}

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Paren(p) => number(&p.expr),
        _ => None,
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
    samples_in: u64,
}

impl Evaluator<'_> {
    /// Folds one input series (deduplicated samples within the plan's select range, in time
    /// order) into the result. Series must come in label order, as the StoreAPI sends them.
    pub fn push(&mut self, labels: &Labels, samples: &[Sample]) -> Result<(), EvalError> {
        debug_assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
        self.samples_in += samples.len() as u64;
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
        match &mut self.agg {
            Some(agg) => agg.push(&labels, &values),
            None => add_plain(&mut self.plain, &mut self.plain_index, labels, &values)?,
        }
        self.values = values;
        Ok(())
    }

    /// Samples pushed so far.
    pub fn samples_in(&self) -> u64 {
        self.samples_in
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
                            let mut index = HashMap::new();
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
                        if t > ts - self.lookback_ms && !is_stale(v) {
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
                    while lo < hi && samples[lo].0 <= ts - range {
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
                        range_fn(func, &self.window, ts, range)
                    } else {
                        range_fn(func, &samples[lo..hi], ts, range)
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

/// Prometheus' kahanSumInc (Neumaier's variant).
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn range_fn(func: RangeFunc, s: &[Sample], ts: i64, range: i64) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    match func {
        RangeFunc::Rate => extrapolated_rate(s, ts, range, true, true),
        RangeFunc::Increase => extrapolated_rate(s, ts, range, true, false),
        RangeFunc::Delta => extrapolated_rate(s, ts, range, false, false),
        RangeFunc::Irate => {
            if s.len() < 2 {
                return None;
            }
            let (t0, v0) = s[s.len() - 2];
            let (t1, v1) = s[s.len() - 1];
            let interval = t1 - t0;
            if interval == 0 {
                return None;
            }
            // a counter reset keeps the last value as the increase
            let inc = if v1 < v0 { v1 } else { v1 - v0 };
            Some(inc / (interval as f64 / 1000.0))
        }
        RangeFunc::AvgOverTime => {
            let mut sum = s[0].1;
            let mut count = 1.0;
            let (mut mean, mut c) = (0.0, 0.0);
            let mut incremental = false;
            for (i, &(_, f)) in s[1..].iter().enumerate() {
                count = (i + 2) as f64;
                if !incremental {
                    let (ns, nc) = kahan_inc(f, sum, c);
                    if !ns.is_infinite() {
                        sum = ns;
                        c = nc;
                        continue;
                    }
                    incremental = true;
                    mean = sum / (count - 1.0);
                    c /= count - 1.0;
                }
                let q = (count - 1.0) / count;
                (mean, c) = kahan_inc(f / count, q * mean, q * c);
            }
            Some(if incremental {
                mean + c
            } else {
                sum / count + c / count
            })
        }
        RangeFunc::SumOverTime => {
            let (mut sum, mut c) = (0.0, 0.0);
            for &(_, f) in s {
                (sum, c) = kahan_inc(f, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        RangeFunc::MaxOverTime => {
            let mut m = s[0].1;
            for &(_, f) in s {
                if f > m || m.is_nan() {
                    m = f;
                }
            }
            Some(m)
        }
        RangeFunc::MinOverTime => {
            let mut m = s[0].1;
            for &(_, f) in s {
                if f < m || m.is_nan() {
                    m = f;
                }
            }
            Some(m)
        }
        RangeFunc::CountOverTime => Some(s.len() as f64),
        RangeFunc::LastOverTime => Some(s[s.len() - 1].1),
    }
}

/// Prometheus' extrapolatedRate for float samples in `(ts - range, ts]`.
fn extrapolated_rate(
    s: &[Sample],
    ts: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let range_start = ts - range;
    let range_end = ts;
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[s.len() - 1];
    let n_minus_one = (s.len() - 1) as f64;
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &s[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / n_minus_one;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result > 0.0 && first_v >= 0.0 {
            to_zero = sampled * (first_v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Per-step accumulator of one group (Prometheus' groupedAggregation, floats only).
#[derive(Clone, Copy, Default)]
struct Acc {
    seen: bool,
    incremental: bool,
    value: f64,
    c: f64,
    mean: f64,
    count: f64,
}

struct Aggregator {
    op: AggOp,
    grouping: Grouping,
    n: usize,
    // groups in order of first appearance, as Prometheus orders its result
    groups: Vec<(Labels, Vec<Acc>)>,
    // group indexes by the hash of their labels (collisions are told apart by comparing)
    index: HashMap<u64, Vec<usize>>,
}

impl Aggregator {
    fn new(op: AggOp, grouping: Grouping, n: usize) -> Self {
        Aggregator {
            op,
            grouping,
            n,
            groups: Vec::new(),
            index: HashMap::new(),
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
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (k, v) in labels.iter().filter(|(k, _)| self.keeps(k, drop_name)) {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        let hash = h.finish();
        if let Some(candidates) = self.index.get(&hash) {
            for &gi in candidates {
                let mut key = self.groups[gi].0.iter();
                let mut mine = labels.iter().filter(|(k, _)| self.keeps(k, drop_name));
                if key.by_ref().zip(mine.by_ref()).all(|(a, b)| a == b)
                    && key.next().is_none()
                    && mine.next().is_none()
                {
                    return gi;
                }
            }
        }
        let key = Labels::from_pairs(
            labels
                .iter()
                .filter(|(k, _)| self.keeps(k, drop_name))
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self.groups.push((key, vec![Acc::default(); self.n]));
        let gi = self.groups.len() - 1;
        self.index.entry(hash).or_default().push(gi);
        gi
    }

    fn push(&mut self, labels: &Labels, values: &[Option<f64>]) {
        self.push_projected(labels, false, values);
    }

    /// Folds a series in; with `drop_name`, its metric name does not count.
    fn push_projected(&mut self, labels: &Labels, drop_name: bool, values: &[Option<f64>]) {
        let gi = self.group_of(labels, drop_name);
        let op = self.op;
        let accs = &mut self.groups[gi].1;
        for (acc, v) in accs.iter_mut().zip(values) {
            let Some(f) = *v else { continue };
            if !acc.seen {
                *acc = Acc {
                    seen: true,
                    incremental: false,
                    value: f,
                    c: 0.0,
                    mean: f,
                    count: 1.0,
                };
                continue;
            }
            match op {
                AggOp::Sum => (acc.value, acc.c) = kahan_inc(f, acc.value, acc.c),
                AggOp::Avg => {
                    acc.count += 1.0;
                    if !acc.incremental {
                        let (nv, nc) = kahan_inc(f, acc.value, acc.c);
                        if !nv.is_infinite() {
                            acc.value = nv;
                            acc.c = nc;
                            continue;
                        }
                        acc.incremental = true;
                        acc.mean = acc.value / (acc.count - 1.0);
                        acc.c /= acc.count - 1.0;
                    }
                    let q = (acc.count - 1.0) / acc.count;
                    (acc.mean, acc.c) = kahan_inc(f / acc.count, q * acc.mean, q * acc.c);
                }
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

    fn finish(self) -> Vec<Series> {
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
                            AggOp::Avg if a.incremental => a.mean + a.c,
                            AggOp::Avg => a.value / a.count + a.c / a.count,
                            AggOp::Count => a.count,
                            AggOp::Max | AggOp::Min => a.value,
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn eval(expr: &str, steps: Steps, input: &[(Labels, Vec<Sample>)]) -> Vec<Series> {
        let plan = Plan::compile(expr).unwrap();
        let mut e = plan.evaluator(steps, 5 * MIN);
        for (labels, s) in input {
            if plan.matches(labels) {
                e.push(labels, s).unwrap();
            }
        }
        e.finish().unwrap()
    }

    fn every(start: i64, step: i64, n: usize, f: impl Fn(usize) -> f64) -> Vec<Sample> {
        (0..n).map(|i| (start + step * i as i64, f(i))).collect()
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (expr, what) in [
            ("topk(3, x)", "topk"),
            ("x / y", "two vectors"),
            ("rate(x[5m] offset 1h)", "offset"),
            ("histogram_quantile(0.9, x)", "histogram_quantile"),
            ("max_over_time(rate(x[5m])[1h:])", "subquer"),
            ("x > 1", ">"),
            ("-x", "unary"),
            ("x @ 100", "@"),
        ] {
            let err = Plan::compile(expr).unwrap_err().to_string();
            assert!(err.contains(what), "{expr}: {err}");
            assert!(err.contains("--source http"), "{expr}: {err}");
        }
        assert!(matches!(
            Plan::compile("sum(").unwrap_err(),
            CompileError::Parse(_)
        ));
    }

    #[test]
    fn select_range_matches_prometheus() {
        let steps = Steps {
            start: 3_600_000,
            step: MIN,
            n: 60,
        };
        let p = Plan::compile("max(x)").unwrap();
        assert_eq!(p.select_range(&steps, 5 * MIN), (3_300_001, 7_140_000));
        let p = Plan::compile("rate(x[10m])").unwrap();
        assert_eq!(p.select_range(&steps, 5 * MIN), (3_000_001, 7_140_000));
        assert!(p.counter_func);
        assert!(!Plan::compile("max_over_time(x[10m])").unwrap().counter_func);
        assert!(Plan::compile("sum(rate(x[5m]))").unwrap().counter_func);
        // the hint is the function nearest the selector; a binary expression above it does
        // not matter, one between them does
        assert!(Plan::compile("rate(x[5m]) * 2").unwrap().counter_func);
        assert!(!Plan::compile("sum(x * 2)").unwrap().counter_func);
    }

    #[test]
    fn lookback_and_staleness() {
        let steps = Steps {
            start: 10 * MIN,
            step: MIN,
            n: 10,
        };
        // samples every minute until 11:00, then a staleness marker at 13:30
        let mut s = every(0, MIN, 12, |i| i as f64);
        s.push((13 * MIN + 30_000, f64::from_bits(STALE_NAN_BITS)));
        let out = eval("x", steps, &[(l(&[("__name__", "x")]), s.clone())]);
        let v = &out[0].values;
        assert_eq!(v[0], Some(10.0));
        assert_eq!(v[1], Some(11.0));
        // 12:00 and 13:00: the sample of 11:00 is within 5 minutes
        assert_eq!(v[2], Some(11.0));
        assert_eq!(v[3], Some(11.0));
        // 14:00: the newest sample is the staleness marker
        assert_eq!(v[4], None);
        // without the marker the series lingers until 16:00 exclusive (lookback is open
        // at its start: a sample exactly 5 minutes old is out)
        s.pop();
        let out = eval("x", steps, &[(l(&[("__name__", "x")]), s)]);
        let v = &out[0].values;
        assert_eq!(v[5], Some(11.0)); // 15:00
        assert_eq!(v[6], None); // 16:00
        assert_eq!(out[0].labels.get("__name__"), "x");
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        let steps = Steps {
            start: 10 * MIN,
            step: MIN,
            n: 1,
        };
        // samples at 5:30 .. 10:00 every 30 s, a counter growing 1 per second
        let s = every(5 * MIN + 30_000, 30_000, 10, |i| 100.0 + 30.0 * i as f64);
        let out = eval(
            "rate(x[5m])",
            steps,
            &[(l(&[("__name__", "x")]), s.clone())],
        );
        // (t - 5m, t] holds 10 samples; extrapolated to the window start: exactly 1/s
        assert_eq!(out[0].values[0], Some(1.0));
        assert_eq!(out[0].labels.get("__name__"), "");
        let out = eval(
            "increase(x[5m])",
            steps,
            &[(l(&[("__name__", "x")]), s.clone())],
        );
        assert_eq!(out[0].values[0], Some(300.0));
        // a counter that started from zero inside the window is not extrapolated below zero
        let s0 = every(7 * MIN, 30_000, 7, |i| 30.0 * i as f64);
        let out = eval("increase(x[5m])", steps, &[(l(&[("__name__", "x")]), s0)]);
        let v = out[0].values[0].unwrap();
        // sampled 3 minutes = 180; start side extends to zero (0 s), end side 0 s
        assert_eq!(v, 180.0);
        // a reset: 100, 130, 160, 10, 40 -> increase 160 - 100 + 40 - 0 (after the reset)
        let r = vec![
            (8 * MIN, 100.0),
            (8 * MIN + 30_000, 130.0),
            (9 * MIN, 160.0),
            (9 * MIN + 30_000, 10.0),
            (10 * MIN, 40.0),
        ];
        let out = eval(
            "increase(x[5m])",
            steps,
            &[(l(&[("__name__", "x")]), r.clone())],
        );
        // raw increase 100 over 120 s of samples; start gap 180 s >= 1.1*30 -> extends 15 s
        let want = 100.0 * (120.0 + 15.0 + 0.0) / 120.0;
        assert_eq!(out[0].values[0], Some(want));
        let out = eval(
            "irate(x[5m])",
            steps,
            &[(l(&[("__name__", "x")]), r.clone())],
        );
        assert_eq!(out[0].values[0], Some(1.0));
        let out = eval("delta(x[5m])", steps, &[(l(&[("__name__", "x")]), r)]);
        assert_eq!(out[0].values[0], Some(-60.0 * 135.0 / 120.0));
    }

    #[test]
    fn range_is_left_open() {
        let steps = Steps {
            start: 10 * MIN,
            step: MIN,
            n: 1,
        };
        // a sample exactly at t - 5m is outside (t - 5m, t] in Prometheus 3
        let s = vec![(5 * MIN, 1000.0), (7 * MIN, 5.0), (10 * MIN, 7.0)];
        let x = l(&[("__name__", "x")]);
        let out = eval("count_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
        assert_eq!(out[0].values[0], Some(2.0));
        let out = eval("max_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
        assert_eq!(out[0].values[0], Some(7.0));
        let out = eval("min_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
        assert_eq!(out[0].values[0], Some(5.0));
        let out = eval("sum_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
        assert_eq!(out[0].values[0], Some(12.0));
        let out = eval("avg_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
        assert_eq!(out[0].values[0], Some(6.0));
        let out = eval(
            "last_over_time(x[5m])",
            steps,
            &[(l(&[("__name__", "x")]), s)],
        );
        assert_eq!(out[0].values[0], Some(7.0));
        assert_eq!(
            out[0].labels.get("__name__"),
            "x",
            "last_over_time keeps the name"
        );
    }

    #[test]
    fn aggregations_group_and_sort() {
        let steps = Steps {
            start: 0,
            step: MIN,
            n: 2,
        };
        let input = vec![
            (
                l(&[("__name__", "m"), ("pod", "b"), ("instance", "i1")]),
                vec![(0, 1.0), (MIN, 2.0)],
            ),
            (
                l(&[("__name__", "m"), ("pod", "a"), ("instance", "i1")]),
                vec![(0, 3.0)],
            ),
            (
                l(&[("__name__", "m"), ("pod", "a"), ("instance", "i2")]),
                vec![(0, 5.0), (MIN, f64::NAN)],
            ),
        ];
        let out = eval("max by (pod) (m)", steps, &input);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels, l(&[("pod", "a")]));
        assert_eq!(out[0].values[0], Some(5.0));
        // the sample at 0 of pod a/i1 is within the lookback at step 1: max(3, NaN) = 3
        assert_eq!(out[0].values[1], Some(3.0));
        let out = eval("max without (instance) (m)", steps, &input);
        assert_eq!(out[0].labels, l(&[("pod", "a")]));
        let out = eval("count(m)", steps, &input);
        assert_eq!(out[0].values, vec![Some(3.0), Some(3.0)]);
        let out = eval("sum(m) * 2", steps, &input);
        assert_eq!(out[0].values[0], Some(18.0));
        let out = eval("avg by (pod) (m)", steps, &input);
        assert_eq!(out[0].values[0], Some(4.0));
        let out = eval("sum(max by (pod) (m))", steps, &input);
        assert_eq!(out[0].values[0], Some(6.0));
        let out = eval("min by (pod) (m) / 1e9", steps, &input);
        assert_eq!(out[1].values[0], Some(1e-9));
    }

    #[test]
    fn kahan_sum_matches_prometheus_not_naive() {
        let steps = Steps {
            start: 0,
            step: MIN,
            n: 1,
        };
        let input: Vec<_> = [1e16, 1.0, -1e16]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    l(&[("__name__", "x"), ("i", &i.to_string())]),
                    vec![(0, *v)],
                )
            })
            .collect();
        let out = eval("sum(x)", steps, &input);
        assert_eq!(out[0].values[0], Some(1.0), "naive summation would give 0");
    }

    #[test]
    fn label_replace_and_empty_result() {
        let steps = Steps {
            start: 0,
            step: MIN,
            n: 1,
        };
        let input = vec![(
            l(&[("__name__", "x"), ("pod", "web-7d9f-abc")]),
            vec![(0, 1.0)],
        )];
        let out = eval(
            r#"label_replace(x, "app", "$1", "pod", "(.*)-[^-]+-[^-]+")"#,
            steps,
            &input,
        );
        assert_eq!(out[0].labels.get("app"), "web");
        let out = eval(
            r#"label_replace(x, "app", "$1", "pod", "nomatch")"#,
            steps,
            &input,
        );
        assert_eq!(out[0].labels.get("app"), "");
        let out = eval("x", steps, &[]);
        assert!(out.is_empty());
    }

    #[test]
    fn duplicate_labelsets_are_refused() {
        let steps = Steps {
            start: MIN,
            step: MIN,
            n: 1,
        };
        let plan = Plan::compile(r#"rate({__name__=~"a|b"}[5m])"#).unwrap();
        let mut e = plan.evaluator(steps, 5 * MIN);
        let s = vec![(0, 1.0), (MIN, 2.0)];
        e.push(&l(&[("__name__", "a"), ("x", "1")]), &s).unwrap();
        let err = e
            .push(&l(&[("__name__", "b"), ("x", "1")]), &s)
            .unwrap_err();
        assert!(err.to_string().contains("same labelset"));
    }

    #[test]
    fn which_plans_keep_the_cluster_label() {
        let keeps = |e: &str| Plan::compile(e).unwrap().preserves_label("cluster");
        assert!(keeps("max by (cluster, node) (kube_node_info)"));
        assert!(keeps("max without (instance, job) (kube_pod_info)"));
        assert!(keeps("sum by (cluster) (rate(x_total[5m])) * 8"));
        assert!(keeps("kube_pod_info"));
        assert!(!keeps("max(kube_node_info)"));
        assert!(!keeps("sum without (cluster) (kube_node_info)"));
        assert!(!keeps(
            r#"label_replace(kube_node_info, "cluster", "x", "", "")"#
        ));
    }
}
