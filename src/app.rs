//! The commands, wired from the configuration: what `main` calls.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use thiserror::Error;
use tracing::{error, info, warn};

use crate::catalog::{Catalog, CatalogError};
use crate::config::{Cli, Command, ConfigError, LogFormat, Options, SourceKind};
use crate::export::{
    Checkpoint, ExportError, Exporter, Progress, Source, Summary, exit, rfc3339, sink_exit_code,
    window_starts,
};
use crate::output::cluster_folder;
use crate::retention;
use crate::sink::{LocalDir, S3Config, S3Sink, Sink, SinkError};
use crate::source::grpc::{GrpcSource, ShardScope};
use crate::source::http::{HttpConfigError, HttpSource, http_client, wait_ready};
use crate::state::{State, StateError, StateStore, state_key};
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
    #[error("retention: {0} (the windows were exported and the state saved)")]
    Retention(SinkError),
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
}

impl AppError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Catalog(_) | AppError::Http(_) => exit::CONFIG,
            AppError::Preflight(e) if e.is_retryable() => exit::UNAVAILABLE,
            AppError::Preflight(_) => exit::CONFIG,
            AppError::NotReady(_) => exit::UNAVAILABLE,
            AppError::Destination(e) | AppError::Retention(e) => sink_exit_code(e),
            AppError::State(StateError::Sink(e)) => sink_exit_code(e),
            AppError::State(_) => exit::CONFIG,
            AppError::Export(e) => e.exit_code(),
            AppError::Bench(e) => e.exit_code(),
        }
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), AppError> {
    let opts = cli.opts;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run_job(&opts).await,
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
            let mut progress = Progress::new(starts.len(), show_bar(&opts));
            let result = exporter.export(&starts, &stop, None, &mut progress).await;
            progress.finish();
            let (summary, err) = match result {
                Ok(s) => (s, None),
                Err((s, e)) => (s, Some(e)),
            };
            log_summary("export finished", &summary, 0, began, starts.len());
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

/// The CronJob: export every complete window since the saved state (first run: since
/// BACKFILL_DAYS ago) up to now minus the settle delay, advancing the state after each
/// window, then apply retention.
async fn run_job(opts: &Options) -> Result<(), AppError> {
    opts.validate()?;
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    let began = Instant::now();
    let now = opts
        .now
        .unwrap_or_else(|| jiff::Timestamp::now().as_second());
    let tf = opts.time_frame as i64;
    let exporter = build_exporter(opts).await?;
    let store = StateStore {
        sink: &exporter.sink,
        key: state_key(
            &exporter.prefix,
            &exporter.cluster_name,
            exporter.shard.map(|s| s.pair()),
        ),
        now,
    };
    let saved = store.load(opts.time_frame).await?;
    let backfill_start = (now - opts.backfill as i64).div_euclid(tf) * tf;
    let retention_start =
        (opts.retention > 0).then(|| (now - opts.retention as i64 + tf - 1).div_euclid(tf) * tf);
    let mut state = match saved {
        Some(s) => {
            info!(key = %store.key, exported_until = %rfc3339(s.exported_until), "state loaded");
            s
        }
        None => {
            info!(key = %store.key, start = %rfc3339(backfill_start), "no state: first run, backfilling");
            State::new(backfill_start, opts.time_frame)
        }
    };
    if let Some(r) = retention_start
        && state.exported_until < r
    {
        warn!(
            exported_until = %rfc3339(state.exported_until),
            retention_start = %rfc3339(r),
            "the state is older than the retention: starting at the retention cutoff, older windows would be deleted right away"
        );
        state.advance(r);
    }
    // writing the state is the check that the bucket is writable
    store
        .save(&state)
        .await
        .map_err(|e| AppError::State(StateError::Sink(e)))?;
    let limit = now - opts.settle_delay as i64;
    let starts = window_starts(state.exported_until, limit - tf + 1, tf);
    info!(
        windows = starts.len(),
        from = %rfc3339(state.exported_until),
        to = %rfc3339(starts.last().map_or(state.exported_until, |w| w + tf)),
        destination = %exporter.sink.describe(),
        "export planned"
    );
    let mut progress = Progress::new(starts.len(), show_bar(opts));
    let result = exporter
        .export(
            &starts,
            &stop,
            Some(Checkpoint {
                store: &store,
                state: &mut state,
            }),
            &mut progress,
        )
        .await;
    progress.finish();
    let (summary, err) = match result {
        Ok(s) => (s, None),
        Err((s, e)) => (s, Some(e)),
    };
    let mut deleted = 0;
    let mut retention_error = None;
    if err.is_none() && !stop.load(Ordering::SeqCst) && opts.retention > 0 {
        match retention::apply(
            &exporter.sink,
            &exporter.prefix,
            &state.clusters,
            now - opts.retention as i64,
        )
        .await
        {
            Ok(r) => deleted = r.deleted,
            Err(e) => retention_error = Some(e),
        }
    }
    log_summary("run finished", &summary, deleted, began, starts.len());
    if let Some(e) = err {
        return Err(AppError::Export(e));
    }
    if stop.load(Ordering::SeqCst) {
        return Err(AppError::Export(ExportError::Interrupted(
            state.exported_until,
        )));
    }
    match retention_error {
        Some(e) => Err(AppError::Retention(e)),
        None => Ok(()),
    }
}

/// A progress bar only for a person watching a terminal.
fn show_bar(opts: &Options) -> bool {
    opts.log_format != LogFormat::Json && std::io::stderr().is_terminal()
}

fn log_summary(message: &str, s: &Summary, deleted: u64, began: Instant, planned: usize) {
    info!(
        windows = s.windows,
        windows_planned = planned,
        series = s.stats.series,
        samples = s.stats.samples,
        calls = s.stats.calls,
        bytes_in = s.stats.bytes_in,
        bytes_out = s.bytes_out,
        files_written = s.files,
        files_deleted = deleted,
        duration_s = began.elapsed().as_secs_f64(),
        peak_rss_bytes = peak_rss_bytes(),
        "{message}"
    );
}

/// The process' peak resident memory (VmHWM), when the platform tells.
pub fn peak_rss_bytes() -> u64 {
    vm_hwm("self")
}

/// Peak resident memory of `/proc/<process>` (a pid, or `self`); 0 when the platform does
/// not tell.
pub fn vm_hwm(process: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
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
    let shard = opts.shard()?;
    if let Some(s) = shard {
        info!(shard = %s, "exporting only the clusters of this shard");
    }
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
            let source = GrpcSource::new(
                client,
                catalog.clone(),
                Arc::new(plans.expect("plans are compiled for the gRPC source")),
                opts.replica_labels.clone(),
                (opts.lookback_delta * 1000) as i64,
                opts.step as i64,
                opts.time_frame as i64,
                opts.concurrency,
            );
            Source::Grpc(Box::new(match shard {
                Some(shard) => source.with_shard(ShardScope {
                    shard,
                    cluster_label: opts.cluster_label.clone(),
                    default_cluster: opts.cluster_name.clone().unwrap_or_default(),
                }),
                None => source,
            }))
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
    if opts.http_configured() {
        let url = format!("{}{}", opts.http_base(), opts.readiness_path);
        let client = http_client(
            &opts.auth_headers(),
            opts.tls_ca_file.as_deref(),
            std::time::Duration::from_secs(10),
        )?;
        wait_ready(&client, &url, 3)
            .await
            .map_err(AppError::NotReady)?;
        info!(url, "http api ready");
    }
    let sink = build_sink(opts).await;
    let prefix = opts.s3_prefix.clone().unwrap_or_default();
    let cluster_name = opts.cluster_name.clone().unwrap_or_default();
    // listing the exporter's own folder proves the bucket exists, the credentials work and
    // the policy allows listing (retention needs it)
    sink.list(&cluster_folder(&prefix, &cluster_name))
        .await
        .map_err(AppError::Destination)?;
    info!(destination = %sink.describe(), "destination answers");
    Ok(Exporter {
        source,
        sink,
        prefix,
        cluster_label: opts.cluster_label.clone(),
        cluster_name,
        time_frame: opts.time_frame as i64,
        retries: opts.retries,
        write_concurrency: opts.concurrency,
        window_concurrency: opts.window_concurrency,
        shard,
    })
}

/// The local directory, or the S3 bucket.
async fn build_sink(opts: &Options) -> Sink {
    if let Some(dir) = &opts.output_dir {
        return Sink::Local(LocalDir::new(dir.clone()));
    }
    let bucket = opts
        .s3_bucket
        .clone()
        .expect("validate() requires S3_BUCKET without OUTPUT_DIR");
    Sink::S3(Box::new(
        S3Sink::new(S3Config {
            bucket,
            region: opts.s3_region.clone(),
            endpoint: opts.s3_endpoint.clone(),
            path_style: opts.s3_path_style.unwrap_or(opts.s3_endpoint.is_some()),
            role_arn: opts.role_arn.clone(),
            external_id: opts.role_external_id.clone(),
            sts_endpoint: opts.sts_endpoint.clone(),
            max_attempts: opts.s3_max_attempts,
            attempt_timeout: std::time::Duration::from_secs(60),
        })
        .await,
    ))
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
