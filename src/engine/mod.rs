//! The PromQL subset evaluated in-process over StoreAPI data.
//!
//! An expression compiles into one selector and a chain of stages, innermost first:
//! a leaf (instant selector or range function) computes a series' value at every step, maps
//! (`label_replace`, arithmetic with a number) transform it, aggregations group it. Series are
//! pushed one at a time as they stream in and folded into the first aggregation's per-step
//! accumulators, so memory follows the output (groups × steps), never the input samples.
//!
//! Semantics are those of the Prometheus 3 engine inside Thanos Query v0.38 and later
//! (`Semantics`: older Thanos releases, Prometheus 2 or 3 where a plan is set to them): range
//! selectors select `(t - range, t]` (left-open; Prometheus 2 selected `[t - range, t]`),
//! instant selectors the newest sample in `(t - lookback, t]`, staleness markers end a series,
//! `rate`/`increase`/`delta` extrapolate as `extrapolatedRate` does, and `sum`/`avg` use the
//! same Kahan-Neumaier summation in the same series order, so results are bit-identical.

mod aggregate;
mod columns;
mod eval;
mod functions;
mod plan;
#[cfg(test)]
mod tests;

pub use columns::{MAX_COLUMNS, by_labels};
pub use eval::{EvalError, Evaluator};
pub use plan::{AggOp, ArithOp, CompileError, Grouping, Leaf, Plan, RangeFunc, Semantics, Stage};

use thiserror::Error;

use crate::catalog::Catalog;

/// A catalog entry the engine cannot evaluate.
#[derive(Debug, Error)]
#[error("catalog entry {name} ({expr}): {source}")]
pub struct EntryError {
    pub name: String,
    pub expr: String,
    pub source: CompileError,
}

/// Compiles every catalog entry for the in-process engine, in entry order.
pub fn compile(catalog: &Catalog) -> Result<Vec<Plan>, EntryError> {
    catalog
        .entries
        .iter()
        .map(|e| {
            Plan::compile(&e.expr).map_err(|source| EntryError {
                name: e.name.clone(),
                expr: e.expr.clone(),
                source,
            })
        })
        .collect()
}

/// A telemetry entry that cannot be exported: not an outer `by (...)` aggregation of at most
/// ten labels, or (for the in-process engine) outside the supported subset.
#[derive(Debug, Error)]
#[error("catalog telemetry entry {name} ({expr}): {reason}")]
pub struct TelemetryEntryError {
    pub name: String,
    pub expr: String,
    pub reason: String,
}

/// The CSV metadata columns of every telemetry entry (its outer `by` labels, sorted), in entry
/// order.
pub fn telemetry_columns(catalog: &Catalog) -> Result<Vec<Vec<String>>, TelemetryEntryError> {
    catalog
        .telemetry
        .iter()
        .map(|e| {
            let columns = by_labels(&e.expr).map_err(|reason| TelemetryEntryError {
                name: e.name.clone(),
                expr: e.expr.clone(),
                reason,
            })?;
            if columns.contains(&e.name) {
                return Err(TelemetryEntryError {
                    name: e.name.clone(),
                    expr: e.expr.clone(),
                    reason: format!(
                        "label {} in by (...) would repeat the telemetry column, which takes the entry's name: rename the entry",
                        e.name
                    ),
                });
            }
            Ok(columns)
        })
        .collect()
}

/// Compiles every telemetry entry for the in-process engine, in entry order.
pub fn compile_telemetry(catalog: &Catalog) -> Result<Vec<Plan>, TelemetryEntryError> {
    catalog
        .telemetry
        .iter()
        .map(|e| {
            Plan::compile(&e.expr).map_err(|source| TelemetryEntryError {
                name: e.name.clone(),
                expr: e.expr.clone(),
                reason: source.to_string(),
            })
        })
        .collect()
}
