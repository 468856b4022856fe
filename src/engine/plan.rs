//! Compiling an expression into a [`Plan`]: one selector, a leaf and a chain of stages, or a
//! [`CompileError`] that names the construct outside the subset.

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier};
use regex::Regex;
use thiserror::Error;

use crate::model::{Labels, METRIC_NAME, MatchKind, Matcher, Steps, anchored};

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
    pub(super) fn drops_name(self) -> bool {
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

/// Whose PromQL the results equal, where Thanos Query's releases, Prometheus 3 and
/// Prometheus 2 part. Thanos Query evaluates with the Prometheus engine it was built with:
/// 2.42 to 2.48 in v0.31 to v0.34, 2.51 to 2.55 in v0.35 to v0.37, 3.x from v0.38 on (each
/// release's go.mod).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Semantics {
    /// Thanos Query v0.38 and later (a Prometheus 3 engine over its stores): counters under
    /// rate, increase, irate read through Thanos' reset-removing iterator, replicas merged by
    /// its penalty deduplication (`dedup::series_samples`).
    #[default]
    Thanos,
    /// Thanos Query v0.35 to v0.37 (Prometheus 2.51 to 2.55 inside): read the same way, with
    /// range selectors and the lookback closed on the left (`[t - range, t]`).
    ThanosClosedRanges,
    /// Thanos Query v0.31 to v0.34 (Prometheus before 2.51 inside): closed ranges too, `rate`
    /// clamping its extrapolation to zero before the 1.1-interval threshold (as Prometheus 2
    /// did until 2.51), and a penalty merge whose first sample counts as a switch between
    /// replicas (Thanos #7271 changed that in v0.35).
    ThanosLegacy,
    /// Prometheus 3 and Mimir over their own TSDB: raw samples (`dedup::prometheus_samples`).
    Prometheus3,
    /// Prometheus 2: raw samples too; range selectors and the lookback are closed on the left
    /// (`[t - range, t]`), and `rate` clamps its extrapolation to zero before the 1.1-interval
    /// threshold instead of after it.
    Prometheus2,
}

impl Semantics {
    /// The semantics of the Thanos release `version` (`v0.34.1`, `0.42.4`, `0.40.0-rc.1`);
    /// an error names a release before v0.31, which the exporter does not read, or a version
    /// it cannot read.
    pub fn of_thanos(version: &str) -> Result<Semantics, String> {
        let v = version.trim().trim_start_matches('v');
        let mut parts = v.split(['.', '-', '+']);
        let number = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok());
        let (Some(major), Some(minor)) = (number(parts.next()), number(parts.next())) else {
            return Err(format!(
                "{version:?} is not a Thanos release (write it as v0.34.1)"
            ));
        };
        Ok(match (major, minor) {
            (0, ..=30) => {
                return Err(format!(
                    "Thanos {version} is older than v0.31.0, the oldest release the exporter reads (its stores cannot drop the replica labels, without_replica_labels): upgrade Thanos, or use --source http"
                ));
            }
            (0, ..=34) => Semantics::ThanosLegacy,
            (0, ..=37) => Semantics::ThanosClosedRanges,
            _ => Semantics::Thanos,
        })
    }

    /// Whether a selection starting at `t - range` includes a sample at `t - range` (and
    /// the lookback a sample exactly `lookback` old).
    pub fn closed_left(self) -> bool {
        matches!(
            self,
            Semantics::Prometheus2 | Semantics::ThanosClosedRanges | Semantics::ThanosLegacy
        )
    }

    /// Whether `rate` clamps its extrapolation to zero before the 1.1-interval threshold.
    pub fn clamp_first(self) -> bool {
        matches!(self, Semantics::Prometheus2 | Semantics::ThanosLegacy)
    }

    /// Whether the penalty merge's first sample counts as a switch between replicas.
    pub fn first_sample_switches(self) -> bool {
        self == Semantics::ThanosLegacy
    }

    /// Whether series are read as Thanos Query reads them (counters without resets under
    /// counter functions, replicas merged), not raw.
    pub fn thanos_reading(self) -> bool {
        matches!(
            self,
            Semantics::Thanos | Semantics::ThanosClosedRanges | Semantics::ThanosLegacy
        )
    }
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
    /// Whose PromQL the results equal (`Thanos` unless set by `with_semantics`).
    pub semantics: Semantics,
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
                    stages.push(aggregate_stage(a)?);
                    nearest_func = Some(a.op.to_string());
                    node = &a.expr;
                }
                Expr::Binary(b) => {
                    let (stage, vector) = arith_stage(b)?;
                    stages.push(stage);
                    // Prometheus stops looking for the selector's function at a binary
                    // expression: the hint is empty unless a function lies below it.
                    nearest_func = Some(String::new());
                    node = vector;
                }
                Expr::Call(c) if c.func.name == "label_replace" => {
                    stages.push(label_replace_stage(c)?);
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
                    kind: MatchKind::Neq,
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
            semantics: Semantics::default(),
        })
    }

    /// The metric name when the selector fixes it with `=`.
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.kind, MatchKind::Eq))
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
        let open = i64::from(!self.semantics.closed_left());
        (steps.start - back + open, steps.end())
    }

    /// The same plan, its results equal to `semantics`' PromQL.
    pub fn with_semantics(mut self, semantics: Semantics) -> Self {
        self.semantics = semantics;
        self
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
}

/// `sum`, `max`, `min`, `avg`, `count` with `by` or `without`.
fn aggregate_stage(a: &parser::AggregateExpr) -> Result<Stage, CompileError> {
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
    Ok(Stage::Aggregate { op, grouping })
}

/// Arithmetic between a vector and a number; returns the stage and the vector operand.
fn arith_stage(b: &parser::BinaryExpr) -> Result<(Stage, &Expr), CompileError> {
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
                "a binary operation between two vectors (only vector-number arithmetic is)".into(),
            ));
        }
    };
    Ok((
        Stage::Arith {
            op,
            scalar,
            scalar_left,
        },
        vector,
    ))
}

/// `label_replace(v, dst, replacement, src, regex)` with literal arguments.
fn label_replace_stage(c: &parser::Call) -> Result<Stage, CompileError> {
    let s = |i: usize| -> Result<String, CompileError> {
        match c.args.args.get(i).map(|a| a.as_ref()) {
            Some(Expr::StringLiteral(l)) => Ok(l.val.clone()),
            _ => Err(CompileError::Unsupported(
                "label_replace() with non-literal arguments".into(),
            )),
        }
    };
    let (dst, replacement, src, re) = (s(1)?, s(2)?, s(3)?, s(4)?);
    let regex = anchored(&re).map_err(|e| CompileError::Regex(re.clone(), e.to_string()))?;
    Ok(Stage::LabelReplace {
        dst,
        replacement,
        src,
        regex,
    })
}

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Paren(p) => number(&p.expr),
        _ => None,
    }
}
