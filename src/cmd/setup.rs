//! What `run` and `export` share: the exporter built from the settings, each part checked
//! before any work (the preflight): the catalog compiles (telemetry entries included), the
//! source answers, the HTTP API is ready, the destination lists.

use std::sync::Arc;

use tracing::{error, info};

use super::AppError;
use super::semantics::semantics;
use crate::catalog::Catalog;
use crate::cli::{ConfigError, Destination, Settings, SourceSettings};
use crate::engine::{self, Plan};
use crate::finout::cluster_folder;
use crate::pipeline::Exporter;
use crate::pipeline::completeness::Completeness;
use crate::pipeline::telemetry::DayExporter;
use crate::remote_read::RemoteReadClient;
use crate::sink::{LocalDir, S3Sink, Sink};
use crate::source::Source;
use crate::source::grpc::{GrpcSettings, GrpcSource, SeriesClient};
use crate::source::http::HttpSource;
use crate::source::inventory::InventorySource;
use crate::store::StoreClient;
use crate::store::proto::info::InfoResponse;

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
    let catalog = Arc::new(catalog);
    let (source, telemetry_source, inventory) =
        sources(s, &catalog, telemetry_prefix.is_some()).await?;
    s.http.wait_ready().await?;
    let sink = destination(s).await?;
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
        completeness: inventory.map(|source| {
            Completeness::new(
                source,
                s.grpc.replica_labels.clone(),
                s.cluster_label.clone(),
                s.shard,
                s.absent_grace,
            )
        }),
    };
    Ok((exporter, telemetry))
}

/// The catalog's source, the telemetry entries' when `telemetry`, and where to read what the
/// endpoint serves (none over remote read, where every URL answers each request or it
/// fails). In-process sources compile the plans first (a catalog the engine refuses is
/// reported before any peer is asked), then connect to the transport and check it answers.
async fn sources(
    s: &Settings,
    catalog: &Arc<Catalog>,
    telemetry: bool,
) -> Result<(Source, Option<Source>, Option<InventorySource>), AppError> {
    let telemetry_catalog = Arc::new(Catalog {
        entries: catalog.telemetry.clone(),
        telemetry: Vec::new(),
    });
    match &s.source {
        SourceSettings::Http(store) => {
            let http = |c: Arc<Catalog>| {
                HttpSource::new(&s.http, c, s.step, s.time_frame, s.concurrency)
                    .map(|h| Source::Http(Box::new(h)))
            };
            let telemetry_source = telemetry.then(|| http(telemetry_catalog)).transpose()?;
            let inventory = match store {
                Some(cfg) => match connect(&SourceSettings::Grpc(cfg.clone())).await?.0 {
                    SeriesClient::Store(client) => InventorySource::Info(client),
                    SeriesClient::RemoteRead(_) => unreachable!("a StoreAPI endpoint"),
                },
                None => InventorySource::Stores {
                    client: s.http.client(s.limits.timeout)?,
                    url: format!("{}/api/v1/stores", s.http.base),
                },
            };
            Ok((http(catalog.clone())?, telemetry_source, Some(inventory)))
        }
        SourceSettings::Grpc(_) | SourceSettings::RemoteRead(_) => {
            let plans = engine::compile(catalog)?;
            let telemetry_plans = engine::compile_telemetry(catalog)?;
            let (client, info) = connect(&s.source).await?;
            let semantics = semantics(s, &client, info.as_ref()).await?;
            let with = |plans: Vec<Plan>| {
                Arc::new(
                    plans
                        .into_iter()
                        .map(|p| p.with_semantics(semantics))
                        .collect::<Vec<_>>(),
                )
            };
            let (plans, telemetry_plans) = (with(plans), with(telemetry_plans));
            let source = GrpcSource::new(client.clone(), catalog.clone(), plans, &s.grpc);
            // the telemetry files belong to no cluster: every series at once
            let everywhere = GrpcSettings {
                clusters: None,
                ..s.grpc.clone()
            };
            let inventory = match &client {
                SeriesClient::Store(c) => Some(InventorySource::Info(c.clone())),
                SeriesClient::RemoteRead(_) => None,
            };
            let telemetry_source = telemetry.then(|| {
                let t = GrpcSource::new(client, telemetry_catalog, telemetry_plans, &everywhere);
                Source::Grpc(Box::new(t))
            });
            Ok((Source::Grpc(Box::new(source)), telemetry_source, inventory))
        }
    }
}

/// The raw series' transport, connected and answering (the preflight), with the StoreAPI
/// endpoint's Info answer when it gave one.
async fn connect(
    source: &SourceSettings,
) -> Result<(SeriesClient, Option<InfoResponse>), AppError> {
    match source {
        SourceSettings::Grpc(cfg) => {
            let client = StoreClient::connect((**cfg).clone())
                .await
                .map_err(|e| AppError::Preflight(e.into()))?;
            // Info: every StoreAPI component serves it (Querier, sidecar, store, receiver)
            let info = match client.info().await {
                Ok(info) => {
                    let range = info.store.as_ref().map(|s| (s.min_time, s.max_time));
                    info!(endpoint = %cfg.endpoint, component = %info.component_type, time_range = ?range, "storeapi answers");
                    Some(info)
                }
                Err(e) if e.is_unimplemented() => {
                    info!(
                        endpoint = %cfg.endpoint,
                        "storeapi has no info service; skipping its preflight"
                    );
                    None
                }
                Err(e) => {
                    error!(endpoint = %cfg.endpoint, error = %e, "storeapi preflight failed");
                    return Err(AppError::Preflight(e.into()));
                }
            };
            Ok((client.into(), info))
        }
        SourceSettings::RemoteRead(cfg) => {
            let client = RemoteReadClient::new((**cfg).clone())
                .map_err(|e| AppError::Preflight(e.into()))?;
            // every URL answers a query that selects nothing
            if let Err(e) = client.preflight().await {
                error!(error = %e, "remote read preflight failed");
                return Err(AppError::Preflight(e.into()));
            }
            info!(urls = ?client.urls(), "remote read answers");
            Ok((client.into(), None))
        }
        SourceSettings::Http(_) => unreachable!("the HTTP source reads no raw series"),
    }
}

/// The destination, listing: the exporter's own folder lists when the bucket exists, the
/// credentials work and the policy allows listing (retention needs it).
async fn destination(s: &Settings) -> Result<Sink, AppError> {
    let sink = match &s.destination {
        Destination::Local(dir) => Sink::Local(LocalDir::new(dir.clone())),
        Destination::S3(cfg) => Sink::S3(Box::new(S3Sink::new(cfg.clone()).await)),
    };
    sink.list(&cluster_folder(&s.prefix, &s.cluster_name))
        .await
        .map_err(AppError::Destination)?;
    Ok(sink)
}
