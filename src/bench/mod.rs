//! `bench`: the same windows exported over `--source grpc` and `--source http` against one live
//! Thanos, alternating the sources, each run a child process of this binary so its peak memory
//! is its own. The Querier's CPU and memory come from its own `/metrics`.

mod agreement;
mod child;
mod querier;
mod render;
mod report;
mod stack;
mod steady;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{info, warn};

use agreement::compare_dirs;
use child::{ChildRun, find_summary, forwarded_args, last_error};
use querier::querier_sample;
use render::render_table;
use render::write_report;
pub use report::{Agreement, Report, Run, SourceReport};

use crate::cli::{BenchArgs, Options, Variant};
use crate::exit;
use crate::observe::{children_cpu_seconds, vm_hwm};
use crate::time::window_starts;

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

// ---- the benchmark -----------------------------------------------------------------------

/// Runs the benchmark and writes its report; the table to print.
pub async fn run(opts: &Options, args: BenchArgs) -> Result<String, BenchError> {
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
    let store = crate::cli::address::store_endpoint(&opts.source)
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let base = crate::cli::address::http_base(&opts.source);
    let metrics_url = format!("{base}/metrics");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| BenchError::Invalid(format!("cannot build the HTTP client: {e}")))?;
    querier_sample(&client, &metrics_url).await?;
    let stack = match &args.stack_pids {
        Some(dir) => Arc::new(stack::read_pid_dir(dir)?),
        None => Arc::new(Vec::new()),
    };
    if args.stack_pids.is_some() {
        info!(processes = stack.len(), "sampling the stack's processes");
    }

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
    if args.steady {
        let tf = opts.windows.time_frame as i64;
        let setup = steady::Setup {
            exe: &exe,
            common: &common,
            client: &client,
            metrics_url: &metrics_url,
            stack: &stack,
            out: &args.out,
            time_frame: tf,
            batch_delay: opts.windows.batch_delay as i64,
            // the first in-process source asked for (grpc sorts before remote-read)
            source: sources
                .iter()
                .copied()
                .find(|v| *v != Variant::Http)
                .unwrap_or(Variant::Grpc),
            prefix: opts
                .destination
                .s3_prefix
                .as_deref()
                .unwrap_or("k8s/prometheus"),
            cluster_name: opts.destination.cluster_name.as_deref().unwrap_or("bench"),
        };
        let r = steady::run(&setup, args.from, args.to).await?;
        return Ok(steady::render(&r));
    }

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
            let stack_before = stack::snapshot(&stack);
            let sampler = tokio::spawn(sample_peaks(
                client.clone(),
                metrics_url.clone(),
                stop.clone(),
                pid.clone(),
                stack.clone(),
            ));
            let child = run_child(&exe, &cmd_args, &log, v, round, pid).await;
            stop.store(true, Ordering::SeqCst);
            let (q_peak, c_peak, stack_peaks) =
                sampler.await.unwrap_or((0, 0, vec![0; stack.len()]));
            let stack_after = stack::snapshot(&stack);
            let after = querier_sample(&client, &metrics_url).await?;
            let stack_figures = stack::figures(&stack, &stack_before, &stack_after, &stack_peaks);
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
                stack_cpu_seconds: stack_figures.values().map(|f| f.cpu_seconds).sum(),
                stack_peak_rss_bytes: stack_figures.values().map(|f| f.peak_rss_bytes).sum(),
                stack: stack_figures,
            };
            info!(
                source = v.name(),
                round,
                wall_s = r.wall_seconds,
                querier_cpu_s = r.querier_cpu_seconds,
                exporter_peak_rss_bytes = r.exporter_peak_rss_bytes,
                stack_cpu_s = r.stack_cpu_seconds,
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
    // every source wrote the same points when they agree: the HTTP files' count serves all
    let output_points = agreement.values().map(|a| a.points).max().unwrap_or(0);
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
            .map(|(v, r)| {
                let mut s = SourceReport::from_runs(r);
                if output_points > 0 {
                    s.exporter_ns_per_point = s.exporter_cpu_seconds * 1e9 / output_points as f64;
                }
                (v.name(), s)
            })
            .collect(),
        agreement,
        outputs_agree,
        output_points,
    };
    write_report(&args.out, &report)?;
    Ok(render_table(&report))
}

/// Polls the Querier's resident memory, the exporter's VmHWM and every stack process'
/// resident memory until `stop`; returns the peaks.
async fn sample_peaks(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    pid: Arc<std::sync::atomic::AtomicU32>,
    stack: Arc<Vec<stack::StackProcess>>,
) -> (u64, u64, Vec<u64>) {
    let (mut querier, mut exporter) = (0u64, 0u64);
    let mut stack_peaks = vec![0u64; stack.len()];
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
        for (peak, p) in stack_peaks.iter_mut().zip(stack.iter()) {
            *peak = (*peak).max(stack::rss_bytes(p.pid));
        }
    }
    (querier, exporter, stack_peaks)
}

/// A child run of this binary, ended.
struct Ended {
    status: std::process::ExitStatus,
    wall_seconds: f64,
    cpu_seconds: f64,
}

/// Runs this binary with `args`, its log to `log`; its pid to `pid_out` once started.
async fn spawn_child(
    exe: &Path,
    args: &[String],
    log: &Path,
    pid_out: Arc<std::sync::atomic::AtomicU32>,
) -> Result<Ended, BenchError> {
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
    Ok(Ended {
        status,
        wall_seconds: began.elapsed().as_secs_f64(),
        cpu_seconds: children_cpu_seconds() - cpu_before,
    })
}

/// A child that must succeed (a steady-state run).
async fn spawn_and_wait(exe: &Path, args: &[String], log: &Path) -> Result<Ended, BenchError> {
    let ended = spawn_child(exe, args, log, Arc::default()).await?;
    if !ended.status.success() {
        let text = std::fs::read_to_string(log).map_err(io("reading", log))?;
        return Err(BenchError::Export {
            source_name: "steady",
            round: 0,
            status: ended.status.to_string(),
            last_error: last_error(&text),
        });
    }
    Ok(ended)
}

async fn run_child(
    exe: &Path,
    args: &[String],
    log: &Path,
    v: Variant,
    round: u32,
    pid_out: Arc<std::sync::atomic::AtomicU32>,
) -> Result<ChildRun, BenchError> {
    let Ended {
        status,
        wall_seconds,
        cpu_seconds,
    } = spawn_child(exe, args, log, pid_out).await?;
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
