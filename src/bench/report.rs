//! What the benchmark measured: per run, per source (the median run), and the whole report
//! as bench.json holds it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::stack::{ProcessFigures, kind};

/// One export run of one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Run {
    pub round: u32,
    pub wall_seconds: f64,
    pub bytes_received: u64,
    pub exporter_peak_rss_bytes: u64,
    /// user + system CPU of the exporter process.
    pub exporter_cpu_seconds: f64,
    pub querier_cpu_seconds: f64,
    pub querier_peak_rss_bytes: u64,
    /// The Querier's resident memory when the run started (Go keeps freed memory a while).
    pub querier_rss_before_bytes: u64,
    pub files: u64,
    pub series: u64,
    pub samples: u64,
    /// user + system CPU of every stack process (`--stack-pids`), summed.
    pub stack_cpu_seconds: f64,
    /// The stack processes' peak resident memory during the run, summed.
    pub stack_peak_rss_bytes: u64,
    /// Per stack process.
    pub stack: BTreeMap<String, ProcessFigures>,
}

/// A source's figures: the run with the median wall time, and every run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceReport {
    pub wall_seconds: f64,
    pub bytes_received: u64,
    pub exporter_peak_rss_bytes: u64,
    pub exporter_cpu_seconds: f64,
    pub querier_cpu_seconds: f64,
    pub querier_peak_rss_bytes: u64,
    pub files: u64,
    pub series: u64,
    pub samples: u64,
    pub stack_cpu_seconds: f64,
    pub stack_peak_rss_bytes: u64,
    /// Median CPU seconds per kind of stack process (`prometheus`, `sidecar`, `query`, …).
    pub stack_cpu_by_kind: BTreeMap<String, f64>,
    /// Exporter CPU per point written (the points of the HTTP source's files), 0 when the
    /// outputs were not compared.
    pub exporter_ns_per_point: f64,
    pub runs: Vec<Run>,
}

impl SourceReport {
    /// Medians over the runs, each figure on its own (the runs' spread is in `runs`).
    pub fn from_runs(runs: Vec<Run>) -> Self {
        let med_f = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let med_u = |f: fn(&Run) -> u64| median(runs.iter().map(|r| f(r) as f64).collect()) as u64;
        SourceReport {
            wall_seconds: med_f(|r| r.wall_seconds),
            bytes_received: med_u(|r| r.bytes_received),
            exporter_peak_rss_bytes: med_u(|r| r.exporter_peak_rss_bytes),
            exporter_cpu_seconds: med_f(|r| r.exporter_cpu_seconds),
            querier_cpu_seconds: med_f(|r| r.querier_cpu_seconds),
            querier_peak_rss_bytes: med_u(|r| r.querier_peak_rss_bytes),
            files: med_u(|r| r.files),
            series: med_u(|r| r.series),
            samples: med_u(|r| r.samples),
            stack_cpu_seconds: med_f(|r| r.stack_cpu_seconds),
            stack_peak_rss_bytes: med_u(|r| r.stack_peak_rss_bytes),
            stack_cpu_by_kind: {
                let kinds: BTreeSet<String> = runs
                    .iter()
                    .flat_map(|r| r.stack.keys().map(|n| kind(n).to_string()))
                    .collect();
                kinds
                    .into_iter()
                    .map(|k| {
                        let per_run = runs
                            .iter()
                            .map(|r| {
                                r.stack
                                    .iter()
                                    .filter(|(n, _)| kind(n) == k)
                                    .map(|(_, f)| f.cpu_seconds)
                                    .sum()
                            })
                            .collect();
                        (k, median(per_run))
                    })
                    .collect()
            },
            exporter_ns_per_point: 0.0,
            runs,
        }
    }
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// How two exports of the same windows compare: the same keys, series and timestamps, values
/// within 1e-9 relative, the contract between the two sources.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Agreement {
    pub files: usize,
    pub identical_files: usize,
    pub points: u64,
    pub max_relative_difference: f64,
    /// The first differences found, for the report.
    pub differences: Vec<String>,
}

impl Agreement {
    pub fn agree(&self) -> bool {
        self.differences.is_empty()
    }
}

/// The whole report, as bench.json holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub from: i64,
    pub to: i64,
    pub span_seconds: i64,
    pub windows: u64,
    pub time_frame: u64,
    pub step: u64,
    pub rounds: u32,
    pub store: String,
    pub prometheus_url: String,
    pub version: &'static str,
    pub sources: BTreeMap<&'static str, SourceReport>,
    /// Each other source's output compared with the HTTP source's (the oracle).
    pub agreement: BTreeMap<&'static str, Agreement>,
    pub outputs_agree: bool,
    /// Points in the files written (the HTTP source's), 0 when not compared.
    pub output_points: u64,
}

impl Report {
    /// The sources in report order: grpc, http, then the variants.
    pub fn ordered(&self) -> Vec<(&'static str, &SourceReport)> {
        let rank = |n: &str| match n {
            "grpc" => 0,
            "http" => 1,
            _ => 2,
        };
        let mut v: Vec<_> = self.sources.iter().map(|(n, s)| (*n, s)).collect();
        v.sort_by_key(|(n, _)| (rank(n), *n));
        v
    }

    /// `http / grpc` of a figure, when both ran and the divisor is not zero.
    pub fn ratio(&self, f: fn(&SourceReport) -> f64) -> Option<f64> {
        let (g, h) = (self.sources.get("grpc")?, self.sources.get("http")?);
        let d = f(g);
        (d > 0.0).then(|| f(h) / d)
    }
}
