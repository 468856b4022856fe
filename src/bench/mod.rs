//! `bench`: the same windows exported over `--source grpc` and `--source http` against one live
//! Thanos, alternating the sources, each run a child process of this binary so its peak memory
//! is its own. The Querier's CPU and memory come from its own `/metrics`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

use crate::cli::{BenchArgs, Cli, Options, Variant};
use crate::exit;
use crate::observe::{children_cpu_seconds, vm_hwm};
use crate::time::{rfc3339, window_starts};

/// Why the benchmark could not run.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the querier's metrics at {url}: {message}")]
    Metrics { url: String, message: String },
    #[error("the {source_name} export (round {round}) exited with {status}: {last_error}")]
    Export {
        source_name: &'static str,
        round: u32,
        status: String,
        last_error: String,
    },
    #[error(
        "the {source_name} export (round {round}) logged no \"export finished\" summary; its log is {log}"
    )]
    NoSummary {
        source_name: &'static str,
        round: u32,
        log: PathBuf,
    },
}

impl BenchError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Invalid(_) => exit::CONFIG,
            BenchError::Metrics { .. } => exit::UNAVAILABLE,
            BenchError::Io { .. } | BenchError::Export { .. } | BenchError::NoSummary { .. } => {
                exit::DATA_REFUSED
            }
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BenchError + 'a {
    move |source| BenchError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

// ---- measurements ------------------------------------------------------------------------

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
            runs,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
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

/// How two exports of the same windows compare (SPEC §6).
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

// ---- the Querier's /metrics ----------------------------------------------------------------

/// The value of an unlabelled sample `name` in Prometheus' text exposition format.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix(' ').or_else(|| rest.strip_prefix("{}"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[derive(Debug, Clone, Copy, Default)]
struct ProcessSample {
    cpu_seconds: f64,
    rss_bytes: u64,
}

async fn querier_sample(client: &reqwest::Client, url: &str) -> Result<ProcessSample, BenchError> {
    let err = |message: String| BenchError::Metrics {
        url: url.to_string(),
        message,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(crate::observe::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let text = resp.text().await.map_err(|e| err(e.to_string()))?;
    let get = |name| metric_value(&text, name).ok_or_else(|| err(format!("no {name} sample")));
    Ok(ProcessSample {
        cpu_seconds: get("process_cpu_seconds_total")?,
        rss_bytes: get("process_resident_memory_bytes")? as u64,
    })
}

// ---- child processes -----------------------------------------------------------------------

/// The summary an export logs when it ends (`app::log_summary`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct ExportSummary {
    pub bytes_in: u64,
    pub series: u64,
    pub samples: u64,
    pub files_written: u64,
    pub duration_s: f64,
    pub peak_rss_bytes: u64,
}

/// The `export finished` event among an export's JSON log lines.
pub fn find_summary(log: &str) -> Option<ExportSummary> {
    log.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("message")?.as_str()? != "export finished" {
            return None;
        }
        // fields sit at the top level, or under "fields" without flattening
        let fields = v.get("fields").filter(|f| f.is_object()).unwrap_or(&v);
        serde_json::from_value(fields.clone()).ok()
    })
}

/// The last error an export logged, for the bench's own error.
fn last_error(log: &str) -> String {
    log.lines()
        .rev()
        .find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v.get("level")?.as_str()? == "ERROR").then(|| {
                v.get("error")
                    .or_else(|| v.get("message"))
                    .and_then(|e| e.as_str())
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .unwrap_or_else(|| log.lines().last().unwrap_or_default().to_string())
}

/// The global options of this command line, to hand to each export: everything but the
/// subcommand, its own flags, and what every run sets itself.
pub fn forwarded_args(argv: &[String]) -> Vec<String> {
    let cli = Cli::command();
    let own: Vec<String> = cli
        .find_subcommand("bench")
        .map(|b| {
            b.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // the summary the bench reads is a JSON info event
    let set_per_run = [
        "source",
        "output-dir",
        "log-format",
        "log-level",
        "grpc-gzip",
    ];
    let takes_value = |long: &str| {
        cli.get_arguments()
            .chain(
                cli.find_subcommand("bench")
                    .into_iter()
                    .flat_map(|b| b.get_arguments()),
            )
            .find(|a| a.get_long() == Some(long))
            .is_some_and(|a| a.get_action().takes_values())
    };
    let mut out = Vec::new();
    let mut seen_subcommand = false;
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if let Some(flag) = a.strip_prefix("--") {
            let (long, inline) = match flag.split_once('=') {
                Some((l, _)) => (l, true),
                None => (flag, false),
            };
            let value = (!inline && takes_value(long)).then(|| it.next()).flatten();
            if own.iter().any(|o| o == long) || set_per_run.contains(&long) {
                continue;
            }
            out.push(a.clone());
            out.extend(value.cloned());
        } else if !seen_subcommand {
            seen_subcommand = true; // the subcommand's name
        } else {
            out.push(a.clone());
        }
    }
    out
}

struct ChildRun {
    summary: ExportSummary,
    wall_seconds: f64,
    cpu_seconds: f64,
}

// ---- the benchmark -----------------------------------------------------------------------

/// Runs the benchmark and writes its report.
pub async fn run(opts: &Options, args: BenchArgs) -> Result<Report, BenchError> {
    if args.from >= args.to {
        return Err(BenchError::Invalid(format!(
            "--from ({}) must be before --to ({})",
            args.from, args.to
        )));
    }
    if args.rounds == 0 || args.sources.is_empty() {
        return Err(BenchError::Invalid(
            "bench needs at least one round and one source".into(),
        ));
    }
    let mut sources = args.sources.clone();
    sources.sort();
    sources.dedup();
    let store = crate::cli::settings::store_endpoint(&opts.source)
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let base = crate::cli::settings::http_base(&opts.source);
    let metrics_url = format!("{base}/metrics");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| BenchError::Invalid(format!("cannot build the HTTP client: {e}")))?;
    querier_sample(&client, &metrics_url).await?;

    let exe = std::env::current_exe().map_err(io("locating", Path::new("the executable")))?;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut common = forwarded_args(&argv);
    if opts.destination.s3_prefix.is_none() {
        common.extend(["--s3-prefix".into(), "k8s/prometheus".into()]);
    }
    if opts.destination.cluster_name.is_none() {
        common.extend(["--cluster-name".into(), "bench".into()]);
    }
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(io("creating", &logs))?;

    let mut runs: BTreeMap<Variant, Vec<Run>> = BTreeMap::new();
    for round in 0..args.rounds {
        // alternate the order, so neither source always finds the caches the other warmed
        let mut order = sources.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for v in order {
            let out_dir = args.out.join("export").join(v.name());
            if out_dir.exists() {
                std::fs::remove_dir_all(&out_dir).map_err(io("clearing", &out_dir))?;
            }
            let mut cmd_args = common.clone();
            cmd_args.extend([
                "export".to_string(),
                "--from".into(),
                args.from.to_string(),
                "--to".into(),
                args.to.to_string(),
                "--output-dir".into(),
                out_dir.display().to_string(),
                "--log-format".into(),
                "json".into(),
                "--log-level".into(),
                "info".into(),
            ]);
            cmd_args.extend(v.export_flags().iter().map(|s| s.to_string()));
            let log = logs.join(format!("{}-{round}.log", v.name()));
            info!(source = v.name(), round, "bench run starting");
            let before = querier_sample(&client, &metrics_url).await?;
            let stop = Arc::new(AtomicBool::new(false));
            let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
            let sampler = tokio::spawn(sample_peaks(
                client.clone(),
                metrics_url.clone(),
                stop.clone(),
                pid.clone(),
            ));
            let child = run_child(&exe, &cmd_args, &log, v, round, pid).await;
            stop.store(true, Ordering::SeqCst);
            let (q_peak, c_peak) = sampler.await.unwrap_or((0, 0));
            let after = querier_sample(&client, &metrics_url).await?;
            let child = child?;
            let r = Run {
                round,
                wall_seconds: child.wall_seconds,
                bytes_received: child.summary.bytes_in,
                exporter_peak_rss_bytes: child.summary.peak_rss_bytes.max(c_peak),
                exporter_cpu_seconds: child.cpu_seconds,
                querier_cpu_seconds: (after.cpu_seconds - before.cpu_seconds).max(0.0),
                querier_peak_rss_bytes: q_peak.max(before.rss_bytes).max(after.rss_bytes),
                querier_rss_before_bytes: before.rss_bytes,
                files: child.summary.files_written,
                series: child.summary.series,
                samples: child.summary.samples,
            };
            info!(
                source = v.name(),
                round,
                wall_s = r.wall_seconds,
                querier_cpu_s = r.querier_cpu_seconds,
                exporter_peak_rss_bytes = r.exporter_peak_rss_bytes,
                "bench run finished"
            );
            runs.entry(v).or_default().push(r);
        }
    }

    let export_root = args.out.join("export");
    let mut agreement = BTreeMap::new();
    if sources.contains(&Variant::Http) {
        for &v in sources.iter().filter(|&&v| v != Variant::Http) {
            let a = compare_dirs(&export_root.join(v.name()), &export_root.join("http"))?;
            if !a.agree() {
                warn!(source = v.name(), differences = ?a.differences, "outputs differ from the http source's");
            }
            agreement.insert(v.name(), a);
        }
    }
    let outputs_agree = !agreement.is_empty() && agreement.values().all(Agreement::agree);
    let report = Report {
        from: args.from,
        to: args.to,
        span_seconds: args.to - args.from,
        windows: window_starts(args.from, args.to, opts.windows.time_frame as i64).len() as u64,
        time_frame: opts.windows.time_frame,
        step: opts.windows.step,
        rounds: args.rounds,
        store,
        prometheus_url: base,
        version: env!("CARGO_PKG_VERSION"),
        sources: runs
            .into_iter()
            .map(|(v, r)| (v.name(), SourceReport::from_runs(r)))
            .collect(),
        agreement,
        outputs_agree,
    };
    write_report(&args.out, &report)?;
    Ok(report)
}

/// Polls the Querier's resident memory and the exporter's VmHWM until `stop`; returns both
/// peaks.
async fn sample_peaks(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    pid: Arc<std::sync::atomic::AtomicU32>,
) -> (u64, u64) {
    let (mut querier, mut exporter) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        if let Ok(s) = querier_sample(&client, &url).await {
            querier = querier.max(s.rss_bytes);
        }
        let p = pid.load(Ordering::SeqCst);
        if p != 0 {
            exporter = exporter.max(vm_hwm(&p.to_string()));
        }
    }
    (querier, exporter)
}

async fn run_child(
    exe: &Path,
    args: &[String],
    log: &Path,
    v: Variant,
    round: u32,
    pid_out: Arc<std::sync::atomic::AtomicU32>,
) -> Result<ChildRun, BenchError> {
    let file = std::fs::File::create(log).map_err(io("creating", log))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args)
        .env_remove("GRPC_GZIP")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    let cpu_before = children_cpu_seconds();
    let began = Instant::now();
    let mut child = cmd.spawn().map_err(io("running", exe))?;
    pid_out.store(child.id(), Ordering::SeqCst);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| BenchError::Invalid(format!("waiting for the export failed: {e}")))?
        .map_err(io("waiting for", exe))?;
    let wall_seconds = began.elapsed().as_secs_f64();
    let cpu_seconds = children_cpu_seconds() - cpu_before;
    let text = std::fs::read_to_string(log).map_err(io("reading", log))?;
    if !status.success() {
        return Err(BenchError::Export {
            source_name: v.name(),
            round,
            status: status.to_string(),
            last_error: last_error(&text),
        });
    }
    let summary = find_summary(&text).ok_or_else(|| BenchError::NoSummary {
        source_name: v.name(),
        round,
        log: log.to_path_buf(),
    })?;
    Ok(ChildRun {
        summary,
        wall_seconds,
        cpu_seconds,
    })
}

// ---- agreement -----------------------------------------------------------------------------

type Points = Vec<(f64, f64)>;

/// Every file below `dir`, as paths relative to it, sorted.
fn files_below(dir: &Path) -> Result<Vec<String>, BenchError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), BenchError> {
        for e in std::fs::read_dir(dir).map_err(io("listing", dir))? {
            let p = e.map_err(io("listing", dir))?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// A result file's series: labels (as canonical JSON) → points; `None` if it is no matrix.
pub fn parse_matrix(body: &[u8]) -> Option<BTreeMap<String, Points>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v["status"] != "success" || v["data"]["resultType"] != "matrix" {
        return None;
    }
    v["data"]["result"]
        .as_array()?
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()?
                .iter()
                .map(|p| {
                    let v = p[1].as_str()?;
                    let x = match v {
                        "NaN" => f64::NAN,
                        "+Inf" => f64::INFINITY,
                        "-Inf" => f64::NEG_INFINITY,
                        _ => v.parse().ok()?,
                    };
                    Some((p[0].as_f64()?, x))
                })
                .collect::<Option<Points>>()?;
            Some((s["metric"].to_string(), points))
        })
        .collect()
}

/// Compares two result bodies (uncompressed JSON); adds to `a`.
pub fn compare_bodies(name: &str, x: &[u8], y: &[u8], a: &mut Agreement) {
    const MAX_LISTED: usize = 10;
    let differ = |a: &mut Agreement, what: String| {
        if a.differences.len() < MAX_LISTED {
            a.differences.push(format!("{name}: {what}"));
        }
    };
    a.files += 1;
    if x == y {
        a.identical_files += 1;
    }
    let (Some(mx), Some(my)) = (parse_matrix(x), parse_matrix(y)) else {
        differ(a, "not a query_range matrix".into());
        return;
    };
    if !mx.keys().eq(my.keys()) {
        differ(a, "different series".into());
        return;
    }
    for (k, px) in &mx {
        let py = &my[k];
        if px.len() != py.len() {
            differ(a, format!("{k}: {} points against {}", px.len(), py.len()));
            continue;
        }
        for (p, q) in px.iter().zip(py) {
            a.points += 1;
            if p.0 != q.0 {
                differ(a, format!("{k}: timestamp {} against {}", p.0, q.0));
                break;
            }
            if p.1 == q.1 || (p.1.is_nan() && q.1.is_nan()) {
                continue;
            }
            let rel = (p.1 - q.1).abs() / q.1.abs().max(f64::MIN_POSITIVE);
            if rel.is_finite() {
                a.max_relative_difference = a.max_relative_difference.max(rel);
            }
            // NaN against a number is a difference too
            if rel.is_nan() || rel > 1e-9 {
                differ(a, format!("{k} at {}: {} against {}", p.0, p.1, q.1));
                break;
            }
        }
    }
}

fn gunzip(path: &Path) -> Result<Vec<u8>, BenchError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
        .map_err(io("decompressing", path))?;
    Ok(out)
}

/// Compares two export directories: the same keys, and per file the same series, timestamps
/// and values within 1e-9 relative.
pub fn compare_dirs(a: &Path, b: &Path) -> Result<Agreement, BenchError> {
    let (fa, fb) = (files_below(a)?, files_below(b)?);
    let mut agreement = Agreement::default();
    for f in fa.iter().filter(|f| !fb.contains(f)).take(5) {
        agreement
            .differences
            .push(format!("{f}: only in {}", a.display()));
    }
    for f in fb.iter().filter(|f| !fa.contains(f)).take(5) {
        agreement
            .differences
            .push(format!("{f}: only in {}", b.display()));
    }
    for f in fa.iter().filter(|f| fb.contains(f)) {
        let (x, y) = (gunzip(&a.join(f))?, gunzip(&b.join(f))?);
        compare_bodies(f, &x, &y, &mut agreement);
    }
    Ok(agreement)
}

// ---- the report ----------------------------------------------------------------------------

fn write_report(dir: &Path, r: &Report) -> Result<(), BenchError> {
    let write = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(io("writing", &path))
    };
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| BenchError::Invalid(format!("cannot render bench.json: {e}")))?;
    write("bench.json", json + "\n")?;
    write("bench.md", render_markdown(r))?;
    write("bench.svg", render_svg(r))?;
    Ok(())
}

/// Bytes in decimal megabytes, as the targets are stated.
fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn span(seconds: i64) -> String {
    if seconds % 86_400 == 0 {
        format!("{} d", seconds / 86_400)
    } else if seconds % 3600 == 0 {
        format!("{} h", seconds / 3600)
    } else {
        format!("{seconds} s")
    }
}

type Row = (
    &'static str,
    fn(&SourceReport) -> String,
    Option<fn(&SourceReport) -> f64>,
);

fn rows() -> Vec<Row> {
    vec![
        (
            "wall time",
            |s| format!("{:.2} s", s.wall_seconds),
            Some(|s| s.wall_seconds),
        ),
        (
            "bytes received",
            |s| mb(s.bytes_received),
            Some(|s| s.bytes_received as f64),
        ),
        (
            "exporter peak RSS",
            |s| mb(s.exporter_peak_rss_bytes),
            Some(|s| s.exporter_peak_rss_bytes as f64),
        ),
        (
            "exporter CPU",
            |s| format!("{:.2} s", s.exporter_cpu_seconds),
            Some(|s| s.exporter_cpu_seconds),
        ),
        (
            "querier CPU",
            |s| format!("{:.2} s", s.querier_cpu_seconds),
            Some(|s| s.querier_cpu_seconds),
        ),
        (
            "querier peak RSS",
            |s| mb(s.querier_peak_rss_bytes),
            Some(|s| s.querier_peak_rss_bytes as f64),
        ),
        ("files", |s| count(s.files), None),
        ("series", |s| count(s.series), None),
        ("samples", |s| count(s.samples), None),
    ]
}

fn ratio_cell(r: &Report, f: Option<fn(&SourceReport) -> f64>) -> String {
    f.and_then(|f| r.ratio(f))
        .map_or_else(String::new, |x| format!("{x:.1}x"))
}

fn agreement_lines(r: &Report) -> Vec<String> {
    if r.agreement.is_empty() {
        return vec!["outputs not compared (the http source did not run)".into()];
    }
    r.agreement
        .iter()
        .map(|(name, a)| {
            format!(
                "{name} vs http: {} ({} files, {} byte-identical, {} points, max relative difference {:.1e})",
                if a.agree() { "agree" } else { "DIFFER" },
                a.files,
                a.identical_files,
                count(a.points),
                a.max_relative_difference
            )
        })
        .collect()
}

/// The terminal table.
pub fn render_table(r: &Report) -> String {
    let names: Vec<&str> = r.ordered().iter().map(|(n, _)| *n).collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut head = vec![String::new()];
    head.extend(names.iter().map(|n| n.to_string()));
    head.push("http/grpc".into());
    lines.push(head);
    for (label, cell, ratio) in rows() {
        let mut l = vec![label.to_string()];
        l.extend(r.ordered().into_iter().map(|(_, s)| cell(s)));
        l.push(ratio_cell(r, ratio));
        lines.push(l);
    }
    let cols = lines[0].len();
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "bench {} windows ({}), {} round(s), median run per source\n",
        r.windows,
        span(r.span_seconds),
        r.rounds
    );
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c == 0 {
                    format!("{s:<w$}", w = width[c])
                } else {
                    format!("{s:>w$}", w = width[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for l in agreement_lines(r) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// bench.md: the same table in Markdown.
pub fn render_markdown(r: &Report) -> String {
    let names: Vec<&str> = r.ordered().iter().map(|(n, _)| *n).collect();
    let (from, to) = (rfc3339(r.from), rfc3339(r.to));
    let mut out = format!(
        "# storeapi-exporter bench\n\n{} windows of {} s ({} span, {from} to {to}), step {} s, {} round(s) per source alternating; median run shown.\nStore `{}`, HTTP `{}`, storeapi-exporter {}.\n\n",
        r.windows,
        r.time_frame,
        span(r.span_seconds),
        r.step,
        r.rounds,
        r.store,
        r.prometheus_url,
        r.version
    );
    out.push_str(&format!("| | {} | http/grpc |\n", names.join(" | ")));
    out.push_str(&format!("|---|{}---:|\n", "---:|".repeat(names.len())));
    for (label, cell, ratio) in rows() {
        let cells: Vec<String> = r.ordered().into_iter().map(|(_, s)| cell(s)).collect();
        out.push_str(&format!(
            "| {label} | {} | {} |\n",
            cells.join(" | "),
            ratio_cell(r, ratio)
        ));
    }
    out.push_str(&format!("\nOutputs: {}.\n", agreement_lines(r).join("; ")));
    for (name, a) in &r.agreement {
        for d in &a.differences {
            out.push_str(&format!("- {name}: {d}\n"));
        }
    }
    out.push_str("\nRuns:\n\n| source | round | wall s | querier CPU s | exporter CPU s | exporter peak RSS | querier peak RSS |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (name, s) in &r.sources {
        for run in &s.runs {
            out.push_str(&format!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                run.round,
                run.wall_seconds,
                run.querier_cpu_seconds,
                run.exporter_cpu_seconds,
                mb(run.exporter_peak_rss_bytes),
                mb(run.querier_peak_rss_bytes)
            ));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// bench.svg: per figure, one bar per source, scaled to the larger of the two so figures of
/// different units share one chart; each bar carries its value.
pub fn render_svg(r: &Report) -> String {
    const COLORS: [&str; 3] = ["#2b6cb0", "#dd6b20", "#38a169"];
    let figures: Vec<Row> = rows().into_iter().filter(|r| r.2.is_some()).collect();
    let names: Vec<&str> = r.ordered().iter().map(|(n, _)| *n).collect();
    let (group_w, bar_w, chart_h, top, left) = (130.0, 34.0, 220.0, 70.0, 20.0);
    let width = left * 2.0 + group_w * figures.len() as f64;
    let notes = agreement_lines(r);
    let height = top + chart_h + 50.0 + 16.0 * notes.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s.push_str(&format!(
        "<text x=\"{left}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">storeapi-exporter bench: {} windows ({} span), lower is better</text>\n",
        r.windows,
        span(r.span_seconds)
    ));
    for (i, n) in names.iter().enumerate() {
        let x = left + i as f64 * 110.0;
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"34\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"44\">{n}</text>\n",
            COLORS[i % COLORS.len()],
            x + 16.0
        ));
    }
    let base_y = top + chart_h;
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{base_y}\" x2=\"{}\" y2=\"{base_y}\" stroke=\"#444\"/>\n",
        width - left
    ));
    for (g, (label, cell, value)) in figures.iter().enumerate() {
        let value = value.expect("figures have values");
        let max = r.sources.values().map(value).fold(0.0f64, f64::max);
        let gx = left + g as f64 * group_w;
        let n = names.len() as f64;
        let x0 = gx + (group_w - n * bar_w - (n - 1.0) * 4.0) / 2.0;
        for (i, (_, src)) in r.ordered().into_iter().enumerate() {
            let h = if max > 0.0 {
                (value(src) / max * chart_h).max(1.0)
            } else {
                1.0
            };
            let x = x0 + i as f64 * (bar_w + 4.0);
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w}\" height=\"{h:.1}\" fill=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text>\n",
                base_y - h,
                COLORS[i % COLORS.len()],
                x + bar_w / 2.0,
                base_y - h - 3.0,
                xml_escape(&cell(src))
            ));
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            gx + group_w / 2.0,
            base_y + 16.0,
            xml_escape(label)
        ));
        let ratio = ratio_cell(r, Some(value));
        if !ratio.is_empty() {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">http/grpc {ratio}</text>\n",
                gx + group_w / 2.0,
                base_y + 31.0
            ));
        }
    }
    for (i, note) in notes.iter().enumerate() {
        s.push_str(&format!(
            "<text x=\"{left}\" y=\"{:.0}\" fill=\"#555\">{}</text>\n",
            base_y + 54.0 + 16.0 * i as f64,
            xml_escape(note)
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str =
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.34
process_cpu_seconds_total_other 99
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.23456789e+08
go_gc_duration_seconds{quantile=\"0\"} 1e-05
";

    #[test]
    fn reads_unlabelled_samples_from_the_exposition_format() {
        assert_eq!(
            metric_value(METRICS, "process_cpu_seconds_total"),
            Some(12.34)
        );
        assert_eq!(
            metric_value(METRICS, "process_resident_memory_bytes"),
            Some(123_456_789.0)
        );
        assert_eq!(metric_value(METRICS, "go_gc_duration_seconds"), None);
        assert_eq!(metric_value(METRICS, "process_open_fds"), None);
        assert_eq!(metric_value("up{} 1\n", "up"), Some(1.0));
    }

    #[test]
    fn finds_the_export_summary_among_log_lines() {
        let log = r#"{"timestamp":"t","level":"INFO","message":"starting"}
not json
{"timestamp":"t","level":"INFO","windows":2,"series":10,"samples":200,"calls":4,"bytes_in":5000,"bytes_out":300,"files_written":4,"files_deleted":0,"duration_s":1.5,"peak_rss_bytes":40960,"message":"export finished","target":"x"}
"#;
        let s = find_summary(log).unwrap();
        assert_eq!(
            s,
            ExportSummary {
                bytes_in: 5000,
                series: 10,
                samples: 200,
                files_written: 4,
                duration_s: 1.5,
                peak_rss_bytes: 40960
            }
        );
        assert!(find_summary("{\"message\":\"starting\"}").is_none());
        let err = r#"{"level":"ERROR","error":"window 1 failed: HTTP 400","message":"failed"}"#;
        assert_eq!(last_error(err), "window 1 failed: HTTP 400");
    }

    #[test]
    fn forwards_global_options_but_not_the_bench_flags() {
        let argv: Vec<String> = [
            "--store",
            "http://q:10901",
            "bench",
            "--from",
            "1",
            "--to=2",
            "--out",
            "dir",
            "--source",
            "http",
            "--step",
            "30",
            "--grpc-gzip",
            "--log-level=debug",
            "--rounds",
            "1",
            "--cluster-name",
            "bench",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            forwarded_args(&argv),
            [
                "--store",
                "http://q:10901",
                "--step",
                "30",
                "--cluster-name",
                "bench"
            ]
        );
    }

    fn body(values: &[(f64, &str)]) -> Vec<u8> {
        let values: Vec<serde_json::Value> = values
            .iter()
            .map(|(t, v)| serde_json::json!([t, v]))
            .collect();
        serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"pod": "p"}, "values": values}
        ]}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn agreement_within_one_in_a_billion() {
        let mut a = Agreement::default();
        let x = body(&[(1.0, "0.25"), (2.0, "NaN")]);
        compare_bodies("f", &x, &x, &mut a);
        assert!(a.agree());
        assert_eq!((a.files, a.identical_files, a.points), (1, 1, 2));

        let y = body(&[(1.0, "0.2500000000001"), (2.0, "NaN")]);
        compare_bodies("g", &x, &y, &mut a);
        assert!(a.agree(), "{:?}", a.differences);
        assert_eq!(a.identical_files, 1);
        assert!(a.max_relative_difference > 0.0 && a.max_relative_difference < 1e-9);

        let z = body(&[(1.0, "0.26"), (2.0, "NaN")]);
        compare_bodies("h", &x, &z, &mut a);
        assert!(!a.agree());
        assert!(a.differences[0].starts_with("h: "), "{:?}", a.differences);

        let mut b = Agreement::default();
        compare_bodies("i", &x, &body(&[(1.0, "0.25")]), &mut b);
        assert!(b.differences[0].contains("2 points against 1"));
        let mut c = Agreement::default();
        compare_bodies("j", &x, b"{\"status\":\"error\"}", &mut c);
        assert!(!c.agree());
    }

    #[test]
    fn compares_directories_by_key() {
        let root = std::env::temp_dir().join(format!("bench-cmp-{}", std::process::id()));
        let (a, b) = (root.join("a"), root.join("b"));
        let write = |dir: &Path, name: &str, body: &[u8]| {
            std::fs::create_dir_all(dir.join("x")).unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, body).unwrap();
            std::fs::write(dir.join("x").join(name), gz.finish().unwrap()).unwrap();
        };
        let x = body(&[(1.0, "1")]);
        write(&a, "1.json.gz", &x);
        write(&b, "1.json.gz", &x);
        let agreement = compare_dirs(&a, &b).unwrap();
        assert!(agreement.agree());
        assert_eq!(agreement.identical_files, 1);
        write(&b, "2.json.gz", &x);
        let agreement = compare_dirs(&a, &b).unwrap();
        assert!(agreement.differences[0].contains("x/2.json.gz: only in"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn medians_per_figure() {
        let run = |w: f64, cpu: f64| Run {
            wall_seconds: w,
            querier_cpu_seconds: cpu,
            files: 4,
            ..Default::default()
        };
        let s = SourceReport::from_runs(vec![run(3.0, 1.0), run(1.0, 9.0), run(2.0, 5.0)]);
        assert_eq!(
            (s.wall_seconds, s.querier_cpu_seconds, s.files),
            (2.0, 5.0, 4)
        );
        assert_eq!(median(vec![1.0, 2.0, 3.0, 10.0]), 2.5);
    }

    fn report() -> Report {
        let src = |w: f64, cpu: f64, rss: u64| {
            SourceReport::from_runs(vec![Run {
                wall_seconds: w,
                bytes_received: 2_000_000,
                exporter_peak_rss_bytes: rss,
                exporter_cpu_seconds: 1.0,
                querier_cpu_seconds: cpu,
                querier_peak_rss_bytes: 300_000_000,
                files: 912,
                series: 21_000,
                samples: 12_345_678,
                ..Default::default()
            }])
        };
        Report {
            from: 1_761_868_800,
            to: 1_761_868_800 + 86_400,
            span_seconds: 86_400,
            windows: 24,
            time_frame: 3600,
            step: 60,
            rounds: 1,
            store: "http://127.0.0.1:10901".into(),
            prometheus_url: "http://127.0.0.1:10902".into(),
            version: "0.1.0",
            sources: BTreeMap::from([
                ("grpc", src(2.0, 1.5, 50_000_000)),
                ("http", src(8.0, 30.0, 80_000_000)),
            ]),
            agreement: BTreeMap::from([(
                "grpc",
                Agreement {
                    files: 912,
                    identical_files: 912,
                    points: 1_000_000,
                    ..Default::default()
                },
            )]),
            outputs_agree: true,
        }
    }

    #[test]
    fn renders_table_markdown_and_chart() {
        let r = report();
        assert_eq!(r.ratio(|s| s.querier_cpu_seconds), Some(20.0));
        let t = render_table(&r);
        assert!(t.contains("24 windows (1 d)"), "{t}");
        let wall = t.lines().find(|l| l.starts_with("wall time")).unwrap();
        assert!(wall.contains("2.00 s") && wall.contains("8.00 s") && wall.ends_with("4.0x"));
        assert!(t.contains("samples") && t.contains("12,345,678"));
        assert!(t.contains("grpc vs http: agree (912 files, 912 byte-identical"));

        let md = render_markdown(&r);
        assert!(
            md.contains("| querier CPU | 1.50 s | 30.00 s | 20.0x |"),
            "{md}"
        );
        assert!(md.contains("| exporter peak RSS | 50.0 MB | 80.0 MB | 1.6x |"));
        assert!(md.contains("2025-10-31T00:00:00Z to 2025-11-01T00:00:00Z"));

        let svg = render_svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 2 + 6 * 2, "legend + bars");
        assert!(svg.contains("http/grpc 20.0x"));

        let json = serde_json::to_value(&r).unwrap();
        for k in [
            "wall_seconds",
            "bytes_received",
            "exporter_peak_rss_bytes",
            "querier_cpu_seconds",
            "querier_peak_rss_bytes",
            "files",
            "series",
            "samples",
        ] {
            assert!(json["sources"]["grpc"][k].is_number(), "{k}");
            assert!(json["sources"]["http"][k].is_number(), "{k}");
        }
        assert_eq!(json["outputs_agree"], true);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(12_345_678), "12,345,678");
    }
}
