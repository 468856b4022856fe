//! The commands, wired from the configuration: what `main` calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use thiserror::Error;
use tracing::{error, info, warn};

use crate::catalog::{Catalog, CatalogError};
use crate::config::{Cli, Command, ConfigError, Options, SourceKind};
use crate::export::{ExportError, Exporter, Source, Summary, exit, window_starts};
use crate::sink::LocalDir;
use crate::source::grpc::GrpcSource;
use crate::source::http::{HttpConfigError, HttpSource};
use crate::storeapi::{StoreClient, StoreConfig, StoreError};

/// Why a command failed, with its exit code.
#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Http(#[from] HttpConfigError),
    #[error("preflight: {0}")]
    Preflight(StoreError),
    #[error(transparent)]
    Export(ExportError),
    #[error("{0}")]
    NotYet(&'static str),
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
}

impl AppError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_)
            | AppError::Catalog(_)
            | AppError::Http(_)
            | AppError::NotYet(_) => exit::CONFIG,
            AppError::Preflight(e) if e.is_retryable() => exit::UNAVAILABLE,
            AppError::Preflight(_) => exit::CONFIG,
            AppError::Export(e) => e.exit_code(),
            AppError::Bench(e) => e.exit_code(),
        }
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), AppError> {
    let opts = cli.opts;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => Err(AppError::NotYet(
            "the run command (state in S3, resume, retention) is not available in this version; use `export --from T --to T --output-dir DIR`",
        )),
        Command::Export { from, to } => {
            opts.validate()?;
            if from >= to {
                return Err(ConfigError::Range { from, to }.into());
            }
            let stop = Arc::new(AtomicBool::new(false));
            watch_signals(stop.clone());
            let exporter = build_exporter(&opts).await?;
            let starts = window_starts(from, to, opts.time_frame as i64);
            let began = Instant::now();
            let result = exporter.export(&starts, &stop).await;
            let (summary, err) = match result {
                Ok(s) => (s, None),
                Err((s, e)) => (s, Some(e)),
            };
            log_summary(&summary, began, starts.len());
            match err {
                None => Ok(()),
                Some(e) => Err(AppError::Export(e)),
            }
        }
        Command::Bench(args) => {
            let report = crate::bench::run(&opts, args).await?;
            print!("{}", crate::bench::render_table(&report));
            Ok(())
        }
    }
}

fn log_summary(s: &Summary, began: Instant, planned: usize) {
    info!(
        windows = s.windows,
        windows_planned = planned,
        series = s.stats.series,
        samples = s.stats.samples,
        calls = s.stats.calls,
        bytes_in = s.stats.bytes_in,
        bytes_out = s.bytes_out,
        files_written = s.files,
        files_deleted = 0u64,
        duration_s = began.elapsed().as_secs_f64(),
        peak_rss_bytes = peak_rss_bytes(),
        "export finished"
    );
}

/// The process' peak resident memory (VmHWM), when the platform tells.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn watch_signals(stop: Arc<AtomicBool>) {
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
        stop.store(true, Ordering::SeqCst);
    });
}

/// Builds the exporter from the options: catalog, source (with its preflight), sink.
pub async fn build_exporter(opts: &Options) -> Result<Exporter, AppError> {
    let catalog = match &opts.catalog {
        Some(path) => Catalog::load(path, &opts.cluster_label)?,
        None => Catalog::default_for(&opts.cluster_label),
    };
    let plans = catalog.validate(opts.time_frame, opts.source == SourceKind::Grpc)?;
    let catalog = Arc::new(catalog);
    let source = match opts.source {
        SourceKind::Grpc => {
            let endpoint = opts.store_endpoint()?;
            let mut cfg = StoreConfig::new(endpoint.clone());
            cfg.ca_file = opts.tls_ca_file.clone();
            cfg.client_cert = opts.tls_cert_file.clone().zip(opts.tls_key_file.clone());
            cfg.tls_server_name = opts.tls_server_name.clone();
            cfg.timeout = opts.timeout();
            cfg.max_message_bytes = opts.max_message_bytes;
            cfg.gzip = opts.grpc_gzip;
            cfg.metadata = opts.auth_headers();
            let client = StoreClient::connect(cfg)
                .await
                .map_err(AppError::Preflight)?;
            preflight(&client, &endpoint).await?;
            Source::Grpc(Box::new(GrpcSource::new(
                client,
                catalog.clone(),
                Arc::new(plans.expect("plans are compiled for the gRPC source")),
                opts.replica_labels.clone(),
                (opts.lookback_delta * 1000) as i64,
                opts.step as i64,
                opts.time_frame as i64,
                opts.concurrency,
            )))
        }
        SourceKind::Http => Source::Http(Box::new(HttpSource::new(
            &opts.http_base(),
            &opts.auth_headers(),
            opts.tls_ca_file.as_deref(),
            opts.timeout(),
            catalog.clone(),
            opts.step as i64,
            opts.time_frame as i64,
            opts.concurrency,
        )?)),
    };
    let Some(dir) = &opts.output_dir else {
        return Err(AppError::NotYet(
            "uploading to S3 is not available in this version: set OUTPUT_DIR (or --output-dir)",
        ));
    };
    Ok(Exporter {
        source,
        sink: LocalDir::new(dir.clone()),
        prefix: opts.s3_prefix.clone().unwrap_or_default(),
        cluster_label: opts.cluster_label.clone(),
        cluster_name: opts.cluster_name.clone().unwrap_or_default(),
        retries: opts.retries,
        write_concurrency: opts.concurrency,
    })
}

/// The StoreAPI answers: Info when the endpoint serves it (Querier, sidecar, store,
/// receiver all do).
async fn preflight(client: &StoreClient, endpoint: &str) -> Result<(), AppError> {
    match client.info().await {
        Ok(info) => {
            let range = info.store.map(|s| (s.min_time, s.max_time));
            info!(endpoint, component = %info.component_type, time_range = ?range, "storeapi answers");
            Ok(())
        }
        Err(StoreError::Status {
            code: tonic::Code::Unimplemented,
            ..
        }) => {
            info!(
                endpoint,
                "storeapi has no info service; skipping its preflight"
            );
            Ok(())
        }
        Err(e) => {
            error!(endpoint, error = %e, "storeapi preflight failed");
            Err(AppError::Preflight(e))
        }
    }
}
