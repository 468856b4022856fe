//! The commands, wired from the command line: what `main` calls.

mod run;
mod setup;

use std::io::IsTerminal;
use std::time::Instant;

use thiserror::Error;
use tracing::{info, warn};

use crate::catalog::CatalogError;
use crate::cli::settings::EXIT_MARGIN;
use crate::cli::{Cli, Command, ConfigError, Destination, LogFormat, Settings};
use crate::engine::{EntryError, TelemetryEntryError};
use crate::exit;
use crate::observe::peak_rss_bytes;
use crate::pipeline::progress::Progress;
use crate::pipeline::state::StateError;
use crate::pipeline::telemetry::{DAY, DaySummary, TelemetryError};
use crate::pipeline::{ExportError, Stop, Summary};
use crate::sink::SinkError;
use crate::source::http::HttpConfigError;
use crate::store::StoreError;
use crate::time::window_starts;

pub use setup::build_exporter;

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
    Preflight(StoreError),
    #[error(
        "preflight: the HTTP API is not ready: {0} (check PROMETHEUS_URL or SCHEME/HOSTNAME/PORT/PATH_PREFIX, and METRICS_READINESS_PATH)"
    )]
    NotReady(String),
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
            AppError::NotReady(_) => exit::UNAVAILABLE,
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
        let report = crate::bench::run(&opts, args).await?;
        print!("{}", crate::bench::render_table(&report));
        return Ok(());
    }
    let s = Settings::resolve(&opts)?;
    log_fault_budget(&s);
    let stop = Stop::default();
    watch_signals(stop.clone());
    let work = async {
        match command {
            Command::Export { from, to } => export(&s, from, to, bar, &stop).await,
            _ => run::run_job(&s, bar, &stop).await,
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

/// `export`: the windows starting in `[from, to)`, then the telemetry days starting in it,
/// without state.
async fn export(s: &Settings, from: i64, to: i64, bar: bool, stop: &Stop) -> Result<(), AppError> {
    if from >= to {
        return Err(ConfigError::Range { from, to }.into());
    }
    let mut progress = Progress::start(s.progress_interval, bar);
    let (exporter, telemetry) = build_exporter(s).await?;
    let starts = window_starts(from, to, s.time_frame);
    let began = Instant::now();
    progress.planned(starts.len());
    let result = exporter.export(&starts, stop, None, &mut progress).await;
    progress.finish();
    let (summary, err) = match result {
        Ok(s) => (s, None),
        Err((s, e)) => (s, Some(e)),
    };
    let mut days = DaySummary::default();
    let mut telemetry_err = None;
    if let Some(t) = &telemetry
        && err.is_none()
    {
        let planned = window_starts(from, to, DAY);
        match t.export(&planned, &Default::default(), stop, None).await {
            Ok(d) => days = d,
            Err((d, e)) => (days, telemetry_err) = (d, Some(e)),
        }
    }
    log_summary("export finished", &summary, &days, 0, began, starts.len());
    match (err, telemetry_err) {
        (Some(e), _) => Err(AppError::Export(e)),
        (None, Some(e)) => Err(AppError::Telemetry(e)),
        (None, None) => Ok(()),
    }
}

fn log_summary(
    message: &str,
    s: &Summary,
    days: &DaySummary,
    deleted: u64,
    began: Instant,
    planned: usize,
) {
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
