//! What `run` and `export` share: the exporter built from the settings, each part checked
//! before any work (the preflight): the catalog compiles (telemetry entries included), the
//! StoreAPI answers, the HTTP API is ready, the destination lists.

use std::sync::Arc;

use tracing::{error, info};

use super::AppError;
use crate::catalog::Catalog;
use crate::cli::settings::{READINESS_ATTEMPTS, READINESS_TIMEOUT};
use crate::cli::{ConfigError, Destination, Settings, SourceSettings};
use crate::engine;
use crate::finout::cluster_folder;
use crate::pipeline::Exporter;
use crate::pipeline::telemetry::DayExporter;
use crate::remote_read::{RemoteReadClient, SeriesClient};
use crate::sink::{LocalDir, S3Sink, Sink};
use crate::source::Source;
use crate::source::grpc::{ClusterScope, GrpcSource};
use crate::source::http::{HttpSource, http_client, wait_ready};
use crate::store::{StoreClient, StoreError};

/// Builds the exporter from the settings: catalog, source (with its preflight), sink; and the
/// telemetry day exporter when the catalog has telemetry entries (shard 0 writes them: the
/// files belong to no cluster).
pub async fn build_exporter(s: &Settings) -> Result<(Exporter, Option<DayExporter>), AppError> {
    if let Some(shard) = s.shard {
        info!(shard = %shard, "exporting only the clusters of this shard");
    }
    let catalog = match &s.catalog_file {
        Some(path) => Catalog::load(path, &s.cluster_label)?,
        None => Catalog::default_for(&s.cluster_label),
    };
    catalog.check(s.time_frame as u64)?;
    let columns = engine::telemetry_columns(&catalog)?;
    let telemetry_prefix = match (&s.telemetry_prefix, catalog.telemetry.is_empty()) {
        (_, true) => None,
        (None, false) => {
            return Err(ConfigError::Missing(
                "a telemetry prefix (the catalog has telemetry entries)",
                "TELEMETRY_PREFIX (or --telemetry-prefix), e.g. finout-telemetry",
            )
            .into());
        }
        (Some(_), false) if s.shard.is_some_and(|sh| sh.index != 0) => {
            info!("telemetry is written by shard 0");
            None
        }
        (Some(p), false) => Some(p.clone()),
    };
    let telemetry_catalog = Arc::new(Catalog {
        entries: catalog.telemetry.clone(),
        telemetry: Vec::new(),
    });
    let catalog = Arc::new(catalog);
    let mut telemetry_source = None;
    // the sources evaluated in-process: the plans first (a catalog the engine refuses is
    // reported before any peer is asked), then the raw series' transport
    let in_process = !matches!(s.source, SourceSettings::Http);
    let plans = in_process
        .then(|| {
            Ok::<_, AppError>((
                engine::compile(&catalog)?,
                engine::compile_telemetry(&catalog)?,
            ))
        })
        .transpose()?;
    let client: Option<SeriesClient> = match &s.source {
        SourceSettings::Grpc(cfg) => {
            let client = StoreClient::connect((**cfg).clone())
                .await
                .map_err(AppError::Preflight)?;
            preflight(&client, &cfg.endpoint).await?;
            Some(client.into())
        }
        SourceSettings::RemoteRead(cfg) => {
            let client = RemoteReadClient::new((**cfg).clone()).map_err(AppError::Preflight)?;
            remote_read_preflight(&client).await?;
            Some(client.into())
        }
        SourceSettings::Http => None,
    };
    let source = match client.zip(plans) {
        Some((client, (plans, telemetry_plans))) => {
            if telemetry_prefix.is_some() {
                telemetry_source = Some(Source::Grpc(Box::new(GrpcSource::new(
                    client.clone(),
                    telemetry_catalog.clone(),
                    Arc::new(telemetry_plans),
                    s.replica_labels.clone(),
                    s.lookback.as_millis() as i64,
                    s.step,
                    s.time_frame,
                    s.concurrency,
                ))));
            }
            let source = GrpcSource::new(
                client,
                catalog.clone(),
                Arc::new(plans),
                s.replica_labels.clone(),
                s.lookback.as_millis() as i64,
                s.step,
                s.time_frame,
                s.concurrency,
            )
            .with_request_points(s.request_points)
            .with_spill_dir(s.spill_dir.clone());
            Source::Grpc(Box::new(source.with_clusters(ClusterScope {
                cluster_label: s.cluster_label.clone(),
                default_cluster: s.cluster_name.clone(),
                shard: s.shard,
            })))
        }
        None => {
            let http = |catalog: Arc<Catalog>| {
                HttpSource::new(
                    &s.http_base,
                    &s.auth_headers,
                    s.tls_ca_file.as_deref(),
                    s.timeout,
                    s.connect_timeout,
                    catalog,
                    s.step,
                    s.time_frame,
                    s.concurrency,
                )
            };
            if telemetry_prefix.is_some() {
                telemetry_source = Some(Source::Http(Box::new(http(telemetry_catalog.clone())?)));
            }
            Source::Http(Box::new(http(catalog.clone())?))
        }
    };
    if s.probe_http {
        let url = format!("{}{}", s.http_base, s.readiness_path);
        let client = http_client(
            &s.auth_headers,
            s.tls_ca_file.as_deref(),
            READINESS_TIMEOUT.min(s.timeout),
            s.connect_timeout,
        )?;
        wait_ready(&client, &url, READINESS_ATTEMPTS)
            .await
            .map_err(AppError::NotReady)?;
        info!(url, "http api ready");
    }
    let sink = match &s.destination {
        Destination::Local(dir) => Sink::Local(LocalDir::new(dir.clone())),
        Destination::S3(cfg) => Sink::S3(Box::new(S3Sink::new(cfg.clone()).await)),
    };
    // listing the exporter's own folder proves the bucket exists, the credentials work and
    // the policy allows listing (retention needs it)
    sink.list(&cluster_folder(&s.prefix, &s.cluster_name))
        .await
        .map_err(AppError::Destination)?;
    if let Some(p) = &telemetry_prefix {
        // retention lists the telemetry folders too
        sink.list(&format!("{p}/"))
            .await
            .map_err(AppError::Destination)?;
    } else if s.telemetry_prefix.is_some() && catalog.telemetry.is_empty() {
        info!("TELEMETRY_PREFIX is set but the catalog has no telemetry entries");
    }
    info!(destination = %sink.describe(), "destination answers");
    let telemetry = telemetry_prefix
        .zip(telemetry_source)
        .map(|(prefix, source)| DayExporter {
            source,
            sink: sink.clone(),
            prefix,
            columns: catalog
                .telemetry
                .iter()
                .map(|e| e.name.clone())
                .zip(columns)
                .collect(),
            attempts: s.attempts,
            write_concurrency: s.concurrency,
        });
    let exporter = Exporter {
        source,
        sink,
        prefix: s.prefix.clone(),
        cluster_label: s.cluster_label.clone(),
        cluster_name: s.cluster_name.clone(),
        time_frame: s.time_frame,
        attempts: s.attempts,
        write_concurrency: s.concurrency,
        window_concurrency: s.window_concurrency,
        windows_per_request: s.windows_per_request,
        shard: s.shard,
        shutdown_timeout: s.shutdown_timeout,
    };
    Ok((exporter, telemetry))
}

/// Every remote read URL answers a query that selects nothing.
async fn remote_read_preflight(client: &RemoteReadClient) -> Result<(), AppError> {
    match client.preflight().await {
        Ok(()) => {
            info!(urls = ?client.urls(), "remote read answers");
            Ok(())
        }
        Err(e) => {
            error!(error = %e, "remote read preflight failed");
            Err(AppError::Preflight(e))
        }
    }
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
