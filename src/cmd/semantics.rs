//! Whose PromQL the files equal, decided once at start: the user's own Querier's, by its
//! Thanos release (its engine's semantics changed in v0.35 and v0.38), over the StoreAPI and
//! over remote read from several servers (an HA pair, deduplicated as Thanos Query would over
//! their sidecars); the server's own over remote read from one (a Prometheus, a Mimir tenant).

use tracing::{info, warn};

use super::AppError;
use crate::cli::{ConfigError, Settings};
use crate::engine::Semantics;
use crate::source::grpc::SeriesClient;
use crate::store::proto::info::InfoResponse;

/// The semantics of the catalog's evaluation over `client`, whose Info answer (a StoreAPI
/// endpoint's) is `info`. A StoreAPI endpoint too old to drop the replica labels is refused.
pub(super) async fn semantics(
    s: &Settings,
    client: &SeriesClient,
    info: Option<&InfoResponse>,
) -> Result<Semantics, AppError> {
    match client {
        SeriesClient::Store(_) => querier(s, info).await,
        SeriesClient::RemoteRead(rr) => {
            let [url] = rr.urls() else {
                info!(
                    "remote read from several servers: the files equal Thanos Query's over their sidecars (deduplicated, counters as Thanos reads them)"
                );
                return Ok(Semantics::Thanos);
            };
            let info = rr.build_info(url).await;
            let semantics = match info.as_ref().and_then(|i| i.prometheus_major()) {
                Some(2) => Semantics::Prometheus2,
                _ => Semantics::Prometheus3,
            };
            let server = info.map_or_else(
                || "unknown (no build info: taken for Prometheus 3)".into(),
                |i| match i.application.as_str() {
                    "" => format!("Prometheus {}", i.version),
                    app => format!("{app} {}", i.version),
                },
            );
            info!(%server, ?semantics, "remote read from one server: the files equal its own query_range");
            Ok(semantics)
        }
    }
}

/// The Querier's semantics by its release: QUERIER_VERSION, else its HTTP API's build info,
/// else what its Info answer tells (v0.31 lists no TSDBs), else the newest releases'.
async fn querier(s: &Settings, info: Option<&InfoResponse>) -> Result<Semantics, AppError> {
    let store = info.and_then(|i| i.store.as_ref());
    if let (Some(info), Some(store)) = (info, store)
        && !store.supports_without_replica_labels
    {
        return Err(ConfigError::QuerierVersion(format!(
            "the StoreAPI endpoint (a Thanos {}) cannot drop the replica labels (without_replica_labels): it is a release before v0.31.0, the oldest the exporter reads; upgrade Thanos, or use --source http",
            info.component_type
        ))
        .into());
    }
    let (release, from) = match &s.querier_version {
        Some((version, semantics)) => {
            tell(version, "QUERIER_VERSION", *semantics);
            return Ok(*semantics);
        }
        None => match s.http.build_info().await {
            Some(b) => (
                b.version,
                format!("{}/api/v1/status/buildinfo", s.http.base),
            ),
            None => (String::new(), String::new()),
        },
    };
    let thanos = release.trim_start_matches('v').starts_with("0.");
    if thanos {
        let semantics = Semantics::of_thanos(&release).map_err(ConfigError::QuerierVersion)?;
        tell(&release, &from, semantics);
        return Ok(semantics);
    }
    let listed = store.is_some_and(|st| st.tsdb_infos.is_empty())
        && info.is_some_and(|i| !i.label_sets.is_empty());
    if listed {
        let semantics = Semantics::ThanosLegacy;
        tell(
            "v0.31",
            "its Info answer (stores, but no TSDBs listed: before v0.32)",
            semantics,
        );
        return Ok(semantics);
    }
    let why = match (release.as_str(), from.as_str()) {
        (_, "") => "its HTTP API's address is not known".to_string(),
        ("", _) => format!("{from} gave no version (a build without one)"),
        (v, _) => format!("{from} names {v:?}, not a Thanos release"),
    };
    warn!(
        reason = %why,
        "the Querier's Thanos release is unknown: the files follow the PromQL of Thanos v0.38 and later; set QUERIER_VERSION to its release, or PROMETHEUS_URL to its HTTP API, if it is older (v0.31 to v0.37 compute rates over ranges closed on the left, up to ~12 % apart)"
    );
    Ok(Semantics::Thanos)
}

/// The start-up line: which release, known how, and what the files follow.
fn tell(release: &str, from: &str, semantics: Semantics) {
    let follows = match semantics {
        Semantics::Thanos => "Thanos v0.38 and later: ranges and lookback open on the left",
        Semantics::ThanosClosedRanges => {
            "Thanos v0.35 to v0.37: ranges and lookback closed on the left"
        }
        _ => {
            "Thanos v0.31 to v0.34: ranges and lookback closed on the left, rate's zero clamp before its threshold, the replica merge's first sample a switch"
        }
    };
    info!(
        release,
        from,
        ?semantics,
        "the Querier's release: the files follow the PromQL of {follows}"
    );
}
