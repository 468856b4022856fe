//! The commands, wired from the command line: what `main` calls.

mod late;
mod push;
mod run;
mod semantics;
mod setup;

use std::io::IsTerminal;
use std::time::Instant;

use thiserror::Error;
use tracing::{info, warn};

use crate::catalog::CatalogError;
use crate::cli::budget::EXIT_MARGIN;
use crate::cli::parse::format_duration;
use crate::cli::{Cli, Command, ConfigError, Destination, LogFormat, Settings, SourceSettings};
use crate::engine::{EntryError, TelemetryEntryError};
use crate::exit;
use crate::observe::peak_rss_bytes;
use crate::pipeline::progress::Progress;
use crate::pipeline::state::StateError;
use crate::pipeline::telemetry::{DAY, DaySummary, TelemetryError};
use crate::pipeline::{EXPORT_FINISHED, ExportError, Stop, Summary};
use crate::sink::SinkError;
use crate::source::SourceError;
use crate::source::http::{HttpConfigError, ReadinessError};
use crate::time::window_starts;
use push::RunReport;

use setup::build_exporter;

/// Why a command failed, with its exit code.
#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Compile(#[from] EntryError),
    #[error(transparent)]
    TelemetryEntry(#[from] TelemetryEntryError),
    #[error(transparent)]
    Http(#[from] HttpConfigError),
    #[error("preflight: {0}")]
    Preflight(SourceError),
    #[error("preflight: {0}")]
    Readiness(#[from] ReadinessError),
    #[error("preflight: the destination: {0}")]
    Destination(SinkError),
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error(transparent)]
    Export(ExportError),
    #[error(transparent)]
    Telemetry(TelemetryError),
    #[error("retention: {0} (the windows were exported and the state saved)")]
    Retention(SinkError),
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    #[error(
        "interrupted by a signal: the work in flight did not stop within SHUTDOWN_TIMEOUT and was abandoned"
    )]
    Abandoned,
}

impl AppError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_)
            | AppError::Catalog(_)
            | AppError::Compile(_)
            | AppError::TelemetryEntry(_)
            | AppError::Http(_) => exit::CONFIG,
            AppError::Preflight(e) if e.is_retryable() => exit::UNAVAILABLE,
            AppError::Preflight(_) => exit::CONFIG,
            AppError::Readiness(ReadinessError::Config(_)) => exit::CONFIG,
            AppError::Readiness(ReadinessError::NotReady(_)) => exit::UNAVAILABLE,
            AppError::Destination(e) | AppError::Retention(e) => e.exit_code(),
            AppError::State(StateError::Sink(e)) => e.exit_code(),
            AppError::State(_) => exit::CONFIG,
            AppError::Export(e) => e.exit_code(),
            AppError::Telemetry(e) => e.exit_code(),
            AppError::Bench(e) => e.exit_code(),
            AppError::Abandoned => exit::INTERRUPTED,
        }
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), AppError> {
    let opts = cli.opts;
    let bar = opts.log.log_format != LogFormat::Json && std::io::stderr().is_terminal();
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::Bench(args) = command {
        print!("{}", crate::bench::run(&opts, args).await?);
        return Ok(());
    }
    let is_run = !matches!(command, Command::Export { .. });
    let mut report = RunReport {
        started_at: wall_clock(),
        ..Default::default()
    };
    let result = match Settings::resolve(&opts) {
        Ok(s) => run_with(&s, command, bar, &mut report).await,
        Err(e) => Err(e.into()),
    };
    if let (true, Some(url)) = (is_run, &opts.log.pushgateway_url) {
        report.ended_at = wall_clock();
        report.exit_code = result.as_ref().err().map_or(exit::OK, AppError::exit_code);
        report.peak_rss_bytes = peak_rss_bytes();
        let shard = opts.windows.shard.filter(|s| s.count > 1).map_or_else(
            || "0-of-1".to_string(),
            |s| format!("{}-of-{}", s.index, s.count),
        );
        let cluster = opts.destination.cluster_name.as_deref().unwrap_or_default();
        push::push(&push::group_url(url, cluster, &shard), &report).await;
    }
    result
}

/// Runs `export` or `run` with the resolved settings.
async fn run_with(
    s: &Settings,
    command: Command,
    bar: bool,
    report: &mut RunReport,
) -> Result<(), AppError> {
    log_settings(s);
    log_fault_budget(s);
    let stop = Stop::default();
    watch_signals(stop.clone());
    let work = async {
        match command {
            Command::Export { from, to } => export(s, from, to, bar, &stop).await,
            _ => run::run_job(s, bar, &stop, report).await,
        }
    };
    // the export abandons its window in flight by itself; this bounds the phases around it
    // (preflight, state, retention), which a frozen peer could hold past the grace period
    tokio::select! {
        biased;
        r = work => r,
        _ = stop.abandoned(s.shutdown_timeout + EXIT_MARGIN) => Err(AppError::Abandoned),
    }
}

/// Unix seconds by the machine's clock (not EXPORTER_NOW: the run metrics tell real time).
fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The worst-case time to exit after each kind of fault, once at start: what the CronJob's
/// deadlines must leave room for (README, "Faults").
fn log_fault_budget(s: &Settings) {
    let s3 = match &s.destination {
        Destination::S3(c) => Some(c),
        Destination::Local(_) => None,
    };
    let b = s.fault_budget(s3);
    info!(
        storeapi_s = b.storeapi.as_secs(),
        http_s = b.http.as_secs(),
        readiness_s = b.readiness.as_secs(),
        s3_s = b.s3.as_secs(),
        shutdown_s = b.shutdown.as_secs(),
        worst_s = b.worst().as_secs(),
        "worst-case time to exit after a fault"
    );
}

/// The resolved settings, once at start, as fields (durations as they are written, secrets
/// never: the credentials show as the headers they set).
fn log_settings(s: &Settings) {
    let d = |d: std::time::Duration| format_duration(d.as_secs());
    let (source, endpoint) = match &s.source {
        SourceSettings::Grpc(c) => ("grpc", c.endpoint.clone()),
        SourceSettings::Http(_) => ("http", s.http.base.clone()),
        SourceSettings::RemoteRead(c) => ("remote-read", c.urls.join(",")),
    };
    let tls = match &s.source {
        SourceSettings::Grpc(c) => c.tls.clone(),
        SourceSettings::RemoteRead(c) => c.tls.clone(),
        SourceSettings::Http(_) => Default::default(),
    };
    let destination = match &s.destination {
        Destination::Local(dir) => dir.display().to_string(),
        Destination::S3(c) => {
            let mut d = format!("s3://{}", c.bucket);
            if let Some(e) = &c.endpoint {
                d.push_str(&format!(" at {e}"));
            }
            if let Some(r) = &c.role_arn {
                d.push_str(&format!(" as {r}"));
            }
            d
        }
    };
    let auth: Vec<String> = s
        .http
        .headers
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    info!(
        source,
        endpoint,
        http_api = %s.http.base,
        readiness_path = s.http.readiness_path.as_deref().unwrap_or(""),
        catalog = %s.catalog_file.as_ref().map_or_else(|| "default".into(), |p| p.display().to_string()),
        destination,
        prefix = %s.prefix,
        telemetry_prefix = s.telemetry_prefix.as_deref().unwrap_or(""),
        cluster_name = %s.cluster_name,
        cluster_label = %s.cluster_label,
        time_frame = format_duration(s.time_frame as u64),
        step = format_duration(s.step as u64),
        backfill = d(s.backfill),
        settle_delay = d(s.settle_delay),
        retention = s.retention.map_or_else(|| "forever".into(), d),
        lookback_delta = d(s.grpc.lookback),
        shard = s.shard.map(|x| x.to_string()).unwrap_or_default(),
        replica_labels = s.grpc.replica_labels.join(","),
        query_timeout = d(s.limits.timeout),
        idle_timeout = d(s.limits.idle_timeout),
        connect_timeout = d(s.limits.connect_timeout),
        tls_ca_file = tls.ca_file.map(|p| p.display().to_string()).unwrap_or_default(),
        tls_client_cert = tls.client_cert.is_some(),
        attempts = s.attempts,
        concurrency = s.concurrency,
        window_concurrency = s.window_concurrency,
        windows_per_request = s.windows_per_request,
        request_points = s.grpc.request_points,
        spill_dir = %s.grpc.spill_dir.display(),
        auth = auth.join(","),
        "configuration"
    );
}

/// `export`: the windows starting in `[from, to)`, then the telemetry days starting in it,
/// without state.
async fn export(s: &Settings, from: i64, to: i64, bar: bool, stop: &Stop) -> Result<(), AppError> {
    if from >= to {
        return Err(ConfigError::Range { from, to }.into());
    }
    let mut progress = Progress::start(s.progress_interval, bar);
    let (mut exporter, telemetry) = build_exporter(s).await?;
    if let Some(c) = exporter.completeness.as_mut() {
        // no state: the sources served now are the expected ones
        let now = s.now.unwrap_or_else(|| jiff::Timestamp::now().as_second());
        c.start(&Default::default(), now)
            .await
            .map_err(AppError::Preflight)?;
    }
    let starts = window_starts(from, to, s.time_frame);
    let began = Instant::now();
    progress.planned(starts.len());
    let result = exporter.export(&starts, stop, None, &mut progress).await;
    progress.finish();
    let mut finished = Finished::windows(result);
    if let Some(t) = &telemetry
        && finished.export.is_none()
    {
        let planned = window_starts(from, to, DAY);
        finished
            .days(t.export(&planned, &Default::default(), stop, None))
            .await;
    }
    finished.log(EXPORT_FINISHED, 0, began, starts.len());
    finished.into_result()
}

/// How the window loop and the telemetry days of a command ended: what `run` and `export`
/// log and return alike.
struct Finished {
    summary: Summary,
    export: Option<ExportError>,
    days: DaySummary,
    telemetry: Option<TelemetryError>,
}

impl Finished {
    fn windows(result: Result<Summary, (Summary, ExportError)>) -> Self {
        let (summary, export) = match result {
            Ok(s) => (s, None),
            Err((s, e)) => (s, Some(e)),
        };
        Finished {
            summary,
            export,
            days: DaySummary::default(),
            telemetry: None,
        }
    }

    /// Records the telemetry days' outcome.
    async fn days(
        &mut self,
        days: impl Future<Output = Result<DaySummary, (DaySummary, TelemetryError)>>,
    ) {
        match days.await {
            Ok(d) => self.days = d,
            Err((d, e)) => (self.days, self.telemetry) = (d, Some(e)),
        }
    }

    fn failed(&self) -> bool {
        self.export.is_some() || self.telemetry.is_some()
    }

    /// The one summary event at the end of a command.
    fn log(&self, message: &str, deleted: u64, began: Instant, planned: usize) {
        let (s, days) = (&self.summary, &self.days);
        info!(
            windows = s.windows,
            windows_planned = planned,
            series = s.stats.series + days.stats.series,
            samples = s.stats.samples + days.stats.samples,
            calls = s.stats.calls + days.stats.calls,
            bytes_in = s.stats.bytes_in + days.stats.bytes_in,
            bytes_out = s.bytes_out + days.bytes_out,
            files_written = s.files,
            files_deleted = deleted,
            telemetry_days = days.days,
            telemetry_files = days.files,
            telemetry_rows = days.rows,
            duration_s = began.elapsed().as_secs_f64(),
            peak_rss_bytes = peak_rss_bytes(),
            "{message}"
        );
    }

    /// The first failure: the windows', else the telemetry days'.
    fn into_result(self) -> Result<(), AppError> {
        match (self.export, self.telemetry) {
            (Some(e), _) => Err(AppError::Export(e)),
            (None, Some(e)) => Err(AppError::Telemetry(e)),
            (None, None) => Ok(()),
        }
    }
}

fn watch_signals(stop: Stop) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        warn!("signal received: finishing the window in flight, starting no new one");
        stop.request();
    });
}
