//! What `run` and `export` share: the exporter built from the settings, each part checked
//! before any work (the preflight): the catalog compiles, the StoreAPI answers, the HTTP API is
//! ready, the destination lists.

use std::sync::Arc;

use tracing::{error, info};

use super::AppError;
use crate::catalog::Catalog;
use crate::cli::settings::{READINESS_ATTEMPTS, READINESS_TIMEOUT};
use crate::cli::{Destination, Settings, SourceSettings};
use crate::engine;
use crate::finout::cluster_folder;
use crate::pipeline::Exporter;
use crate::sink::{LocalDir, S3Sink, Sink};
use crate::source::Source;
use crate::source::grpc::{GrpcSource, ShardScope};
use crate::source::http::{HttpSource, http_client, wait_ready};
use crate::store::{StoreClient, StoreError};

/// Builds the exporter from the settings: catalog, source (with its preflight), sink.
pub async fn build_exporter(s: &Settings) -> Result<Exporter, AppError> {
    if let Some(shard) = s.shard {
        info!(shard = %shard, "exporting only the clusters of this shard");
    }
    let catalog = match &s.catalog_file {
        Some(path) => Catalog::load(path, &s.cluster_label)?,
        None => Catalog::default_for(&s.cluster_label),
    };
    catalog.check(s.time_frame as u64)?;
    let catalog = Arc::new(catalog);
    let source = match &s.source {
        SourceSettings::Grpc(cfg) => {
            let plans = engine::compile(&catalog)?;
            let client = StoreClient::connect((**cfg).clone())
                .await
                .map_err(AppError::Preflight)?;
            preflight(&client, &cfg.endpoint).await?;
            let source = GrpcSource::new(
                client,
                catalog.clone(),
                Arc::new(plans),
                s.replica_labels.clone(),
                s.lookback.as_millis() as i64,
                s.step,
                s.time_frame,
                s.concurrency,
            );
            Source::Grpc(Box::new(match s.shard {
                Some(shard) => source.with_shard(ShardScope {
                    shard,
                    cluster_label: s.cluster_label.clone(),
                    default_cluster: s.cluster_name.clone(),
                }),
                None => source,
            }))
        }
        SourceSettings::Http => Source::Http(Box::new(HttpSource::new(
            &s.http_base,
            &s.auth_headers,
            s.tls_ca_file.as_deref(),
            s.timeout,
            s.connect_timeout,
            catalog.clone(),
            s.step,
            s.time_frame,
            s.concurrency,
        )?)),
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
    info!(destination = %sink.describe(), "destination answers");
    Ok(Exporter {
        source,
        sink,
        prefix: s.prefix.clone(),
        cluster_label: s.cluster_label.clone(),
        cluster_name: s.cluster_name.clone(),
        time_frame: s.time_frame,
        attempts: s.attempts,
        write_concurrency: s.concurrency,
        window_concurrency: s.window_concurrency,
        shard: s.shard,
        shutdown_timeout: s.shutdown_timeout,
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
