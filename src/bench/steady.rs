//! `bench --steady`: the load users feel every day, not a backfill's. The CronJob's day is
//! simulated: `run` every 30 minutes with its state, the clock (`--now`) moving over the data,
//! once over the StoreAPI at the deployment's settings (`BATCH_DELAY` and the rest, as given
//! to `bench`; or over remote read, with `--sources remote-read,http`), once over HTTP as
//! Finout's exporter runs (one `query_range` per metric and hour, each hour as soon as it
//! settled). The in-process source's state starts `BATCH_DELAY` behind the day, as a
//! deployment in its steady state is, so its batches fall as they do day after day, and with
//! the request packing a run before the day learned, as every day's but the first; the HTTP
//! path's starts with the day, as it is never more than an hour behind.
//! Reported per source: windows exported, calls, the whole stack's CPU (per kind of process),
//! the exporter's CPU and peak memory, each window's delay after its end, and whether the
//! windows both exported agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::info;

use super::agreement::compare_dirs_where;
use super::child::find_summary_of;
use super::querier::querier_sample;
use super::stack::{self, StackProcess, kind};
use super::{Agreement, BenchError, io};
use crate::cli::args::Variant;
use crate::finout::layout::window_of_key;

/// The CronJob's period (Finout's `*/30 * * * *`).
const PERIOD: i64 = 1800;

/// One source's simulated day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SteadySource {
    pub runs: u64,
    /// Runs that exported at least one window.
    pub exporting_runs: u64,
    pub windows: u64,
    pub calls: u64,
    pub bytes_received: u64,
    pub stack_cpu_seconds: f64,
    pub stack_cpu_by_kind: BTreeMap<String, f64>,
    pub querier_cpu_seconds: f64,
    pub exporter_cpu_seconds: f64,
    pub exporter_peak_rss_bytes: u64,
    /// Seconds from a window's end to the run that wrote it: the longest and the mean.
    pub max_delay_seconds: i64,
    pub mean_delay_seconds: f64,
    /// Whole-stack CPU per window exported.
    pub stack_cpu_seconds_per_window: f64,
    /// Whole-stack and the exporter's own CPU (its processes') per window exported: the
    /// user's bill, as the exporter runs on the same clusters.
    pub total_cpu_seconds_per_window: f64,
}

/// The steady-state report, as steady.json holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SteadyReport {
    pub from: i64,
    pub to: i64,
    pub time_frame: i64,
    /// The state's mark when the day starts: the StoreAPI's batches' phase.
    pub starts_behind_seconds: i64,
    /// The in-process source of the day in `grpc`: `grpc` (the StoreAPI) or `remote-read`.
    pub source: Variant,
    pub grpc: SteadySource,
    pub http: SteadySource,
    /// HTTP whole-stack CPU per window over gRPC's.
    pub stack_ratio: f64,
    /// HTTP whole-stack and exporter CPU per window over gRPC's.
    pub total_ratio: f64,
    /// The windows both exported, compared.
    pub agreement: Agreement,
}

/// What a steady-state bench needs of the benchmark's setup.
pub(super) struct Setup<'a> {
    pub exe: &'a Path,
    /// Global flags for every run (the endpoints, the settings given to `bench`).
    pub common: &'a [String],
    pub client: &'a reqwest::Client,
    pub metrics_url: &'a str,
    pub stack: &'a [StackProcess],
    pub out: &'a Path,
    pub time_frame: i64,
    /// BATCH_DELAY of the gRPC runs.
    pub batch_delay: i64,
    /// The in-process source compared with HTTP: the StoreAPI's or remote read's.
    pub source: Variant,
    pub prefix: &'a str,
    pub cluster_name: &'a str,
}

/// Simulates the day `[from, to)` for both sources and writes steady.json and steady.md.
pub(super) async fn run(s: &Setup<'_>, from: i64, to: i64) -> Result<SteadyReport, BenchError> {
    let tf = s.time_frame;
    // a deployment in its steady state is up to BATCH_DELAY behind, in whole windows; the
    // HTTP path exports each hour once it settled, so it starts with the day
    let behind = (s.batch_delay + tf - 1) / tf * tf;
    let start = from - behind;
    let grpc_dir = s.out.join("steady").join(s.source.name());
    let http_dir = s.out.join("steady/http");
    let flags = s.source.export_flags();
    let packing = learned_packing(s, &grpc_dir, start, flags).await?;
    let grpc = day(s, &grpc_dir, (start, packing), (from, to), flags).await?;
    let http = day(
        s,
        &http_dir,
        (from, None),
        (from, to),
        // as Finout's exporter runs: no wait for late data either
        &[
            "--source",
            "http",
            "--batch-delay",
            "0",
            "--watermark-metric=",
        ],
    )
    .await?;
    // the windows both wrote: the StoreAPI's first windows are the day before's, its last
    // batch of the day may still wait
    let end = (start + grpc.windows as i64 * tf).min(from + http.windows as i64 * tf);
    let both = |k: &str| window_of_key(k).is_some_and(|w| w >= from && w < end);
    let agreement = compare_dirs_where(&grpc_dir, &http_dir, both)?;
    let report = SteadyReport {
        from,
        to,
        time_frame: tf,
        starts_behind_seconds: behind,
        source: s.source,
        stack_ratio: http.stack_cpu_seconds_per_window
            / grpc.stack_cpu_seconds_per_window.max(1e-9),
        total_ratio: http.total_cpu_seconds_per_window
            / grpc.total_cpu_seconds_per_window.max(1e-9),
        grpc,
        http,
        agreement,
    };
    let json = serde_json::to_vec_pretty(&report).expect("the report serialises");
    let path = s.out.join("steady.json");
    std::fs::write(&path, json).map_err(io("writing", &path))?;
    let path = s.out.join("steady.md");
    std::fs::write(&path, render(&report)).map_err(io("writing", &path))?;
    Ok(report)
}

/// The request packing a deployment's state carries into any day but its first: what the
/// requests of its runs before learned (`State::packing`), here of one unmeasured `run` over
/// the window from `start` (the data sets hold none before), in a directory of its own.
/// Without it the day's first run asks its first window entry by entry, as a deployment's
/// very first run does (docs/benchmarks.md, "Steady state").
async fn learned_packing(
    s: &Setup<'_>,
    dir: &Path,
    start: i64,
    flags: &[&str],
) -> Result<Option<serde_json::Value>, BenchError> {
    let warm = dir.with_extension("warm");
    if warm.exists() {
        std::fs::remove_dir_all(&warm).map_err(io("clearing", &warm))?;
    }
    let tf = s.time_frame;
    seed_state(&warm, s.prefix, s.cluster_name, start, tf, None)?;
    // that window alone is due, now
    let mut warm_flags = flags.to_vec();
    warm_flags.extend(["--batch-delay", "0", "--settle-delay", "0"]);
    let args = run_args(s.common, &warm_flags, start + tf, &warm);
    let log = dir.with_extension("warm.log");
    super::spawn_and_wait(s.exe, &args, &log).await?;
    let state = read_state(&warm, s.prefix, s.cluster_name)?;
    std::fs::remove_dir_all(&warm).map_err(io("clearing", &warm))?;
    Ok(Some(state["packing"].clone()).filter(|p| !p.is_null()))
}

/// One source's day: a `run` every period from `from + period` to `to`, with its state
/// (exported up to `start`, with the packing given, if any).
async fn day(
    s: &Setup<'_>,
    dir: &Path,
    (start, packing): (i64, Option<serde_json::Value>),
    (from, to): (i64, i64),
    flags: &[&str],
) -> Result<SteadySource, BenchError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io("clearing", dir))?;
    }
    seed_state(dir, s.prefix, s.cluster_name, start, s.time_frame, packing)?;
    let logs = dir.with_extension("logs");
    std::fs::create_dir_all(&logs).map_err(io("creating", &logs))?;
    let mut out = SteadySource::default();
    let (mut exported, mut delays) = (start, Vec::new());
    let mut now = from + PERIOD;
    while now <= to {
        let args = run_args(s.common, flags, now, dir);
        let log = logs.join(format!("{now}.log"));
        let q_before = querier_sample(s.client, s.metrics_url).await?;
        let stack_before = stack::snapshot(s.stack);
        let child = super::spawn_and_wait(s.exe, &args, &log).await?;
        let stack_after = stack::snapshot(s.stack);
        let q_after = querier_sample(s.client, s.metrics_url).await?;
        let text = std::fs::read_to_string(&log).map_err(io("reading", &log))?;
        let summary =
            find_summary_of(&text, "run finished").ok_or_else(|| BenchError::NoSummary {
                source_name: "steady",
                round: 0,
                log: log.clone(),
            })?;
        let peaks = vec![0; s.stack.len()];
        for (name, f) in stack::figures(s.stack, &stack_before, &stack_after, &peaks) {
            *out.stack_cpu_by_kind
                .entry(kind(&name).to_string())
                .or_default() += f.cpu_seconds;
            out.stack_cpu_seconds += f.cpu_seconds;
        }
        out.runs += 1;
        out.querier_cpu_seconds += (q_after.cpu_seconds - q_before.cpu_seconds).max(0.0);
        out.exporter_cpu_seconds += child.cpu_seconds;
        out.exporter_peak_rss_bytes = out.exporter_peak_rss_bytes.max(summary.peak_rss_bytes);
        out.calls += summary.calls;
        out.bytes_received += summary.bytes_in;
        let until = state_until(dir, s.prefix, s.cluster_name)?;
        if until > exported {
            out.exporting_runs += 1;
            let mut w = exported;
            while w < until {
                delays.push(now - (w + s.time_frame));
                w += s.time_frame;
            }
            exported = until;
        }
        now += PERIOD;
    }
    out.windows = delays.len() as u64;
    out.max_delay_seconds = delays.iter().copied().max().unwrap_or(0);
    out.mean_delay_seconds = delays.iter().sum::<i64>() as f64 / delays.len().max(1) as f64;
    out.stack_cpu_seconds_per_window = out.stack_cpu_seconds / out.windows.max(1) as f64;
    out.total_cpu_seconds_per_window =
        (out.stack_cpu_seconds + out.exporter_cpu_seconds) / out.windows.max(1) as f64;
    info!(source = ?flags, windows = out.windows, stack_cpu_s = out.stack_cpu_seconds, "steady day simulated");
    Ok(out)
}

/// The arguments of a `run` at `now` writing to `dir`: `common` with `flags` over it.
fn run_args(common: &[String], flags: &[&str], now: i64, dir: &Path) -> Vec<String> {
    let mut args = without(common, flags);
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(
        [
            "run",
            "--now",
            &now.to_string(),
            "--output-dir",
            &dir.display().to_string(),
            "--retention-days",
            "0",
            "--log-format",
            "json",
        ]
        .map(str::to_string),
    );
    args
}

/// `common` without the flags `flags` sets itself (each given once: `--x v` or `--x=v`).
fn without(common: &[String], flags: &[&str]) -> Vec<String> {
    let set: Vec<&str> = flags
        .iter()
        .filter(|f| f.starts_with("--"))
        .filter_map(|f| f.split('=').next())
        .collect();
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in common {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let name = a.split('=').next().unwrap_or(a);
        if set.contains(&name) {
            skip_value = !a.contains('=');
            continue;
        }
        out.push(a.clone());
    }
    out
}

fn state_path(dir: &Path, prefix: &str, cluster: &str) -> PathBuf {
    dir.join(prefix)
        .join(cluster)
        .join("storeapi-exporter-state.json")
}

/// A state whose windows are exported up to `until`, with `packing` if given.
fn seed_state(
    dir: &Path,
    prefix: &str,
    cluster: &str,
    until: i64,
    time_frame: i64,
    packing: Option<serde_json::Value>,
) -> Result<(), BenchError> {
    let path = state_path(dir, prefix, cluster);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let mut state = serde_json::json!({
        "version": 1,
        "exported_until": until,
        "time_frame": time_frame,
    });
    if let Some(packing) = packing {
        state["packing"] = packing;
    }
    std::fs::write(&path, state.to_string()).map_err(io("writing", &path))
}

fn read_state(dir: &Path, prefix: &str, cluster: &str) -> Result<serde_json::Value, BenchError> {
    let path = state_path(dir, prefix, cluster);
    let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
    serde_json::from_str(&text).map_err(|e| BenchError::Invalid(format!("{}: {e}", path.display())))
}

fn state_until(dir: &Path, prefix: &str, cluster: &str) -> Result<i64, BenchError> {
    let v = read_state(dir, prefix, cluster)?;
    Ok(v["exported_until"].as_i64().unwrap_or_default())
}

/// steady.md: the day per source, side by side.
pub fn render(r: &SteadyReport) -> String {
    let (g, h) = (&r.grpc, &r.http);
    let kinds: Vec<&String> = g
        .stack_cpu_by_kind
        .keys()
        .chain(h.stack_cpu_by_kind.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let name = match r.source {
        Variant::Grpc => "gRPC",
        other => other.name(),
    };
    let mut t = format!(
        "A simulated day of the CronJob (a `run` every 30 minutes with its state), {} to {}; the {name} runs' state starts {} h behind (their batch delay) with the request packing a run before the day learned, the HTTP path's with the day.\n\n| | {name} | HTTP | HTTP / {name} |\n|---|---:|---:|---:|\n",
        crate::time::rfc3339(r.from),
        crate::time::rfc3339(r.to),
        r.starts_behind_seconds / 3600
    );
    let ratio = |a: f64, b: f64| {
        if a > 0.0 {
            format!("{:.2}x", b / a)
        } else {
            String::new()
        }
    };
    let mut row = |name: &str, a: String, b: String, x: String| {
        t.push_str(&format!("| {name} | {a} | {b} | {x} |\n"));
    };
    row(
        "runs (exporting)",
        format!("{} ({})", g.runs, g.exporting_runs),
        format!("{} ({})", h.runs, h.exporting_runs),
        String::new(),
    );
    row(
        "windows",
        g.windows.to_string(),
        h.windows.to_string(),
        String::new(),
    );
    row(
        "whole stack CPU per window",
        format!("{:.3} s", g.stack_cpu_seconds_per_window),
        format!("{:.3} s", h.stack_cpu_seconds_per_window),
        format!("**{:.2}x**", r.stack_ratio),
    );
    row(
        "stack + exporter CPU per window",
        format!("{:.3} s", g.total_cpu_seconds_per_window),
        format!("{:.3} s", h.total_cpu_seconds_per_window),
        format!("**{:.2}x**", r.total_ratio),
    );
    row(
        "whole stack CPU, the day",
        format!("{:.2} s", g.stack_cpu_seconds),
        format!("{:.2} s", h.stack_cpu_seconds),
        ratio(g.stack_cpu_seconds, h.stack_cpu_seconds),
    );
    for k in kinds {
        let (a, b) = (
            g.stack_cpu_by_kind.get(k).copied().unwrap_or(0.0),
            h.stack_cpu_by_kind.get(k).copied().unwrap_or(0.0),
        );
        row(
            &format!("  {k}"),
            format!("{a:.2} s"),
            format!("{b:.2} s"),
            ratio(a, b),
        );
    }
    row(
        "Querier CPU",
        format!("{:.2} s", g.querier_cpu_seconds),
        format!("{:.2} s", h.querier_cpu_seconds),
        ratio(g.querier_cpu_seconds, h.querier_cpu_seconds),
    );
    row(
        "calls",
        g.calls.to_string(),
        h.calls.to_string(),
        ratio(g.calls as f64, h.calls as f64),
    );
    row(
        "bytes received",
        g.bytes_received.to_string(),
        h.bytes_received.to_string(),
        String::new(),
    );
    row(
        "exporter CPU, peak memory",
        format!(
            "{:.2} s, {} MiB",
            g.exporter_cpu_seconds,
            g.exporter_peak_rss_bytes >> 20
        ),
        format!(
            "{:.2} s, {} MiB",
            h.exporter_cpu_seconds,
            h.exporter_peak_rss_bytes >> 20
        ),
        String::new(),
    );
    row(
        "delay after a window's end: max, mean",
        format!(
            "{} min, {:.0} min",
            g.max_delay_seconds / 60,
            g.mean_delay_seconds / 60.0
        ),
        format!(
            "{} min, {:.0} min",
            h.max_delay_seconds / 60,
            h.mean_delay_seconds / 60.0
        ),
        String::new(),
    );
    let a = &r.agreement;
    t.push_str(&format!(
        "\nThe {} files both wrote: {} byte-identical, {}.\n",
        a.files,
        a.identical_files,
        if a.agree() {
            "the rest equal within 1e-9".to_string()
        } else {
            format!("differences: {}", a.differences.join("; "))
        }
    ));
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_runs_own_flags_replace_the_common_ones() {
        let common: Vec<String> = [
            "--store",
            "x",
            "--batch-delay",
            "3h",
            "--source=grpc",
            "--step",
            "60",
            "--watermark-metric=",
        ]
        .map(String::from)
        .into();
        let http = [
            "--source",
            "http",
            "--batch-delay",
            "0",
            "--watermark-metric=",
        ];
        let got = super::without(&common, &http);
        assert_eq!(got, ["--store", "x", "--step", "60"]);
    }
}
