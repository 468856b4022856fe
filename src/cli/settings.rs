//! The command line resolved once into what the commands use: checked, typed (durations as
//! `Duration`, windows in seconds), with the environment that is not a flag (HOSTNAME as
//! Kubernetes sets it, an Indexed Job's JOB_COMPLETION_*) read here and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::address::{auth_headers, env_hostname, http_base_with, store_endpoint_with};
use super::args::{Options, SourceKind, WindowArgs};
use crate::engine::Semantics;
use crate::pipeline::lateness::LateSettings;
use crate::remote_read::RemoteReadConfig;
use crate::shard::Shard;
use crate::sink::S3Config;
use crate::source::grpc::{ClusterScope, GrpcSettings};
use crate::source::http::HttpSettings;
use crate::store::{Limits, StoreConfig, TlsFiles};

/// A configuration that cannot work.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0} is required: set {1}")]
    Missing(&'static str, &'static str),
    #[error(
        "no StoreAPI endpoint: set STORE_ENDPOINT (or --store), e.g. http://thanos-query.monitoring:10901 (HOSTNAME is this machine's own name, not the Thanos host)"
    )]
    NoStore,
    #[error("QUERY_STEP ({step}s) must be positive and divide TIME_FRAME ({time_frame}s)")]
    Step { step: u64, time_frame: u64 },
    #[error("--from ({from}) must be before --to ({to})")]
    Range { from: i64, to: i64 },
    #[error(
        "CONCURRENCY, WINDOW_CONCURRENCY, WINDOWS_PER_REQUEST and REQUEST_POINTS must be at least 1"
    )]
    Concurrency,
    #[error("CLUSTER_NAME {0:?} must be one path segment (no '/')")]
    ClusterName(String),
    #[error("{0}")]
    Shard(String),
    #[error(
        "TELEMETRY_PREFIX {telemetry:?} is S3_PREFIX {prefix:?} or below it, where Finout reads every folder as a cluster: give the telemetry files a prefix of their own, e.g. finout-telemetry"
    )]
    TelemetryPrefix { telemetry: String, prefix: String },
    #[error("{0} must be at least 1s")]
    ZeroTimeout(&'static str),
    #[error("QUERIER_VERSION: {0}")]
    QuerierVersion(String),
    #[error(
        "LATE_DATA_HORIZON ({horizon}s) is shorter than LATE_DATA_GRACE ({grace}s): a window written without a lagging cluster after the grace must still be correctable; raise LATE_DATA_HORIZON"
    )]
    LateDataHorizon { horizon: u64, grace: u64 },
    #[error(
        "WATERMARK_METRIC {0:?} is not a metric name: give the name of a metric every cluster has (e.g. kube_node_info), or an empty value to turn the wait for late data off"
    )]
    WatermarkMetric(String),
    #[error(
        "SPILL_DIR {0:?} is not a directory: give a writable directory (an emptyDir volume on Kubernetes) or leave it unset for the temporary directory"
    )]
    SpillDir(String),
}

/// Where the catalog is evaluated, with what that needs.
#[derive(Debug, Clone)]
pub enum SourceSettings {
    /// The StoreAPI endpoint, TLS, deadline and metadata.
    Grpc(Box<StoreConfig>),
    /// Thanos Query's (or Prometheus') HTTP API; with the Querier's StoreAPI when STORE_ENDPOINT
    /// is set, to read what it serves from its Info (else from its `/api/v1/stores`).
    Http(Option<Box<StoreConfig>>),
    /// Prometheus remote read: the URLs, TLS, deadlines and headers.
    RemoteRead(Box<RemoteReadConfig>),
}

/// Where the files go.
#[derive(Debug, Clone)]
pub enum Destination {
    Local(PathBuf),
    S3(S3Config),
}

/// Everything `run` and `export` need, resolved and checked: the settings of each component
/// (the transport in `source`, the in-process engine in `grpc`, the HTTP API in `http`, the
/// destination), and those of the window loop.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: SourceSettings,
    /// How the in-process engine (`--source grpc` and `remote-read`) asks and evaluates.
    pub grpc: GrpcSettings,
    /// The HTTP API: `--source http`, and the readiness probe of any source.
    pub http: HttpSettings,
    pub catalog_file: Option<PathBuf>,
    pub destination: Destination,
    pub prefix: String,
    /// Where the telemetry CSV files go (slashes around it trimmed), when set.
    pub telemetry_prefix: Option<String>,
    pub cluster_name: String,
    pub cluster_label: String,
    /// Window length and evaluation step, seconds (the unit of object keys).
    pub time_frame: i64,
    pub step: i64,
    pub backfill: Duration,
    /// The clock (unix seconds), when fixed for a test or a replay.
    pub now: Option<i64>,
    pub settle_delay: Duration,
    /// How old the oldest due window must be before a run exports (`run` only).
    pub batch_delay: Duration,
    /// How long files are kept; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// This pod's shard, when there is more than one.
    pub shard: Option<Shard>,
    /// Deadlines of every call to the StoreAPI, remote read and the HTTP API.
    pub limits: Limits,
    /// After SIGTERM, how long the window in flight may take before it is abandoned.
    pub shutdown_timeout: Duration,
    /// How often progress, and calls without progress, are logged.
    pub progress_interval: Duration,
    /// Attempts per window (evaluation) and per file (upload) on transient errors.
    pub attempts: u32,
    pub concurrency: usize,
    pub window_concurrency: usize,
    pub windows_per_request: usize,
    /// How long a source may be absent before windows are exported without it; `None`:
    /// never.
    pub absent_grace: Option<Duration>,
    /// How `run` waits for late data; `None`: it does not (WATERMARK_METRIC empty).
    pub late: Option<LateSettings>,
    /// The Thanos release of the Querier, with its semantics, when given (QUERIER_VERSION);
    /// `None`: found at start.
    pub querier_version: Option<(String, Semantics)>,
}

impl Settings {
    /// Checks the options and resolves them for `run` and `export`.
    pub fn resolve(opts: &Options) -> Result<Settings, ConfigError> {
        let (src, dst, win, conn) = (
            &opts.source,
            &opts.destination,
            &opts.windows,
            &opts.connection,
        );
        if win.step == 0 || win.time_frame == 0 || !win.time_frame.is_multiple_of(win.step) {
            return Err(ConfigError::Step {
                step: win.step,
                time_frame: win.time_frame,
            });
        }
        let prefix = dst.s3_prefix.clone().ok_or(ConfigError::Missing(
            "the key prefix",
            "S3_PREFIX (or --s3-prefix)",
        ))?;
        let cluster_name =
            dst.cluster_name
                .clone()
                .filter(|n| !n.is_empty())
                .ok_or(ConfigError::Missing(
                    "the cluster name",
                    "CLUSTER_NAME (or --cluster-name)",
                ))?;
        let destination = match (&dst.output_dir, &dst.s3_bucket) {
            (Some(dir), _) => Destination::Local(dir.clone()),
            (None, Some(bucket)) => Destination::S3(S3Config {
                bucket: bucket.clone(),
                region: dst.s3_region.clone(),
                endpoint: dst.s3_endpoint.clone(),
                path_style: dst.s3_path_style.unwrap_or(dst.s3_endpoint.is_some()),
                role_arn: dst.role_arn.clone(),
                external_id: dst.role_external_id.clone(),
                sts_endpoint: dst.sts_endpoint.clone(),
                max_attempts: dst.s3_max_attempts,
                connect_timeout: Duration::from_secs(conn.connect_timeout),
                attempt_timeout: Duration::from_secs(dst.s3_attempt_timeout),
                operation_timeout: Duration::from_secs(dst.s3_operation_timeout),
            }),
            (None, None) => {
                return Err(ConfigError::Missing(
                    "a destination",
                    "S3_BUCKET (or --s3-bucket), or OUTPUT_DIR (or --output-dir) for a local directory",
                ));
            }
        };
        let telemetry_prefix = dst
            .telemetry_prefix
            .as_deref()
            .map(|p| p.trim_matches('/').to_string())
            .filter(|p| !p.is_empty());
        if let Some(t) = &telemetry_prefix {
            let p = prefix.trim_matches('/');
            if p.is_empty() || t == p || t.starts_with(&format!("{p}/")) {
                return Err(ConfigError::TelemetryPrefix {
                    telemetry: t.clone(),
                    prefix: prefix.clone(),
                });
            }
        }
        if let Some(dir) = &conn.spill_dir
            && !dir.is_dir()
        {
            return Err(ConfigError::SpillDir(dir.display().to_string()));
        }
        if conn.concurrency == 0
            || conn.window_concurrency == 0
            || conn.windows_per_request == 0
            || conn.request_points == 0
        {
            return Err(ConfigError::Concurrency);
        }
        for (value, name) in [
            (conn.timeout, "QUERY_TIMEOUT"),
            (conn.idle_timeout, "QUERY_IDLE_TIMEOUT"),
            (conn.connect_timeout, "CONNECT_TIMEOUT"),
            (dst.s3_attempt_timeout, "S3_ATTEMPT_TIMEOUT"),
            (dst.s3_operation_timeout, "S3_OPERATION_TIMEOUT"),
            (opts.log.progress_interval, "PROGRESS_INTERVAL"),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroTimeout(name));
            }
        }
        if cluster_name.contains('/') || cluster_name == "." || cluster_name == ".." {
            return Err(ConfigError::ClusterName(cluster_name));
        }
        let env_host = env_hostname();
        let auth_headers = auth_headers(conn);
        let limits = Limits {
            timeout: Duration::from_secs(conn.timeout),
            idle_timeout: Duration::from_secs(conn.idle_timeout),
            connect_timeout: Duration::from_secs(conn.connect_timeout),
            max_message_bytes: conn.max_message_bytes,
        };
        let tls = TlsFiles {
            ca_file: conn.tls_ca_file.clone(),
            client_cert: conn.tls_cert_file.clone().zip(conn.tls_key_file.clone()),
        };
        let store = |endpoint: String| {
            Box::new(StoreConfig {
                endpoint,
                tls: tls.clone(),
                tls_server_name: conn.tls_server_name.clone(),
                limits,
                gzip: conn.grpc_gzip,
                metadata: auth_headers.clone(),
            })
        };
        let source = match src.source {
            SourceKind::Grpc => {
                SourceSettings::Grpc(store(store_endpoint_with(src, env_host.as_deref())?))
            }
            SourceKind::Http => SourceSettings::Http(src.store.clone().map(store)),
            SourceKind::RemoteRead => {
                let urls: Vec<String> = src
                    .remote_read_urls
                    .iter()
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect();
                if urls.is_empty() {
                    return Err(ConfigError::Missing(
                        "a remote read URL (--source remote-read)",
                        "REMOTE_READ_URL (or --remote-read-url), e.g. http://prometheus:9090/api/v1/read",
                    ));
                }
                SourceSettings::RemoteRead(Box::new(RemoteReadConfig {
                    urls,
                    tls,
                    limits,
                    headers: auth_headers.clone(),
                }))
            }
        };
        let shard = match win.shard {
            Some(s) => Some(s),
            None => Shard::from_job_env(
                std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
                std::env::var("JOB_COMPLETIONS").ok().as_deref(),
            )
            .transpose()
            .map_err(ConfigError::Shard)?,
        }
        .filter(|s| s.count > 1);
        let probe_http = src.source == SourceKind::Http
            || src.prometheus_url.is_some()
            || src.hostname.is_some()
            || env_host.is_some();
        let http = HttpSettings {
            base: http_base_with(src, env_host.as_deref()),
            headers: auth_headers,
            ca_file: conn.tls_ca_file.clone(),
            timeout: limits.timeout,
            connect_timeout: limits.connect_timeout,
            readiness_path: probe_http.then(|| src.readiness_path.clone()),
        };
        let grpc = GrpcSettings {
            replica_labels: src.replica_labels.clone(),
            lookback: Duration::from_secs(src.lookback_delta),
            step: win.step as i64,
            time_frame: win.time_frame as i64,
            concurrency: conn.concurrency,
            request_points: conn.request_points,
            spill_dir: conn.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            clusters: Some(ClusterScope {
                cluster_label: dst.cluster_label.clone(),
                default_cluster: cluster_name.clone(),
                shard,
                only: None,
            }),
        };
        Ok(Settings {
            source,
            grpc,
            http,
            catalog_file: src.catalog.clone(),
            destination,
            prefix,
            telemetry_prefix,
            cluster_name,
            cluster_label: dst.cluster_label.clone(),
            time_frame: win.time_frame as i64,
            step: win.step as i64,
            backfill: Duration::from_secs(win.backfill),
            now: win.now,
            settle_delay: Duration::from_secs(win.settle_delay),
            batch_delay: Duration::from_secs(win.batch_delay),
            retention: (win.retention > 0).then(|| Duration::from_secs(win.retention)),
            shard,
            limits,
            shutdown_timeout: Duration::from_secs(win.shutdown_timeout),
            progress_interval: Duration::from_secs(opts.log.progress_interval),
            attempts: conn.retries,
            concurrency: conn.concurrency,
            window_concurrency: conn.window_concurrency,
            windows_per_request: conn.windows_per_request,
            absent_grace: (win.absent_cluster_grace > 0)
                .then(|| Duration::from_secs(win.absent_cluster_grace)),
            late: late_settings(win)?,
            querier_version: match src.querier_version.trim() {
                "" | "auto" => None,
                v => Some((
                    v.to_string(),
                    Semantics::of_thanos(v).map_err(ConfigError::QuerierVersion)?,
                )),
            },
        })
    }
}

/// The late-data settings: none without a watermark metric; the metric a plain name.
fn late_settings(win: &WindowArgs) -> Result<Option<LateSettings>, ConfigError> {
    let metric = win.watermark_metric.trim();
    if metric.is_empty() {
        return Ok(None);
    }
    let name_char = |(i, c): (usize, char)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    };
    if !metric.chars().enumerate().all(name_char) {
        return Err(ConfigError::WatermarkMetric(metric.to_string()));
    }
    if win.late_data_horizon < win.late_data_grace {
        return Err(ConfigError::LateDataHorizon {
            horizon: win.late_data_horizon,
            grace: win.late_data_grace,
        });
    }
    Ok(Some(LateSettings {
        metric: metric.to_string(),
        grace: Duration::from_secs(win.late_data_grace),
        horizon: Duration::from_secs(win.late_data_horizon),
    }))
}

/// The smallest command line `Settings::resolve` accepts, for tests.
#[cfg(test)]
pub(crate) const MINIMAL: [&str; 8] = [
    "--store",
    "http://q:10901",
    "--s3-prefix",
    "p",
    "--cluster-name",
    "c",
    "--output-dir",
    "/tmp/x",
];

/// The options of a command line given without the program's name, for tests.
#[cfg(test)]
pub(crate) fn opts(args: &[&str]) -> Options {
    use clap::Parser;
    let mut argv = vec!["storeapi-exporter"];
    argv.extend_from_slice(args);
    crate::cli::Cli::parse_from(argv).opts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeouts_are_refused() {
        let mut argv = MINIMAL.to_vec();
        argv.extend_from_slice(&["--s3-attempt-timeout", "0s"]);
        let e = Settings::resolve(&opts(&argv)).unwrap_err();
        assert_eq!(e.to_string(), "S3_ATTEMPT_TIMEOUT must be at least 1s");
    }

    #[test]
    fn the_flags_defaults_are_the_transports_defaults() {
        let s = Settings::resolve(&opts(&MINIMAL)).unwrap();
        assert_eq!(s.limits, Limits::default());
        let SourceSettings::Grpc(store) = &s.source else {
            panic!("grpc is the default source")
        };
        assert_eq!(store.limits, StoreConfig::new("x").limits);
        assert_eq!(s.grpc.request_points, crate::source::grpc::REQUEST_POINTS);
    }

    #[test]
    fn resolves_checked_and_typed() {
        let base = MINIMAL;
        let s = Settings::resolve(&opts(&base)).unwrap();
        assert_eq!((s.time_frame, s.step), (3600, 60));
        assert_eq!(s.grpc.lookback, Duration::from_secs(300));
        assert_eq!(s.retention, Some(Duration::from_secs(30 * 86_400)));
        assert!(matches!(s.source, SourceSettings::Grpc(ref c) if c.endpoint == "http://q:10901"));
        assert!(matches!(s.destination, Destination::Local(_)));
        let with = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            Settings::resolve(&opts(&a))
        };
        assert!(matches!(
            with(&["--step", "7"]),
            Err(ConfigError::Step { .. })
        ));
        let mut slash = base.to_vec();
        slash[5] = "a/b";
        assert!(matches!(
            Settings::resolve(&opts(&slash)),
            Err(ConfigError::ClusterName(_))
        ));
        assert!(matches!(
            with(&["--concurrency", "0"]),
            Err(ConfigError::Concurrency)
        ));
        assert_eq!(with(&["--retention-days", "0"]).unwrap().retention, None);
        assert_eq!(s.querier_version, None, "auto: found at start");
        assert_eq!(
            with(&["--querier-version", "v0.34.1"])
                .unwrap()
                .querier_version,
            Some(("v0.34.1".to_string(), Semantics::ThanosLegacy))
        );
        assert!(matches!(
            with(&["--late-data-grace", "5h", "--late-data-horizon", "4h"]),
            Err(ConfigError::LateDataHorizon { .. })
        ));
        let old = with(&["--querier-version", "v0.30.0"]).unwrap_err();
        assert!(
            matches!(old, ConfigError::QuerierVersion(ref m) if m.contains("v0.31.0")),
            "{old}"
        );
        assert_eq!(with(&["--shard", "0/1"]).unwrap().shard, None);
        assert_eq!(
            with(&["--telemetry-prefix", "/finout/telemetry/"])
                .unwrap()
                .telemetry_prefix
                .as_deref(),
            Some("finout/telemetry")
        );
        assert_eq!(
            with(&["--telemetry-prefix", "/"]).unwrap().telemetry_prefix,
            None
        );
        for inside in ["p", "p/telemetry", "/p/"] {
            assert!(
                matches!(
                    with(&["--telemetry-prefix", inside]),
                    Err(ConfigError::TelemetryPrefix { .. })
                ),
                "{inside}"
            );
        }
        assert!(with(&["--telemetry-prefix", "pt"]).is_ok());
        let s = with(&["--bearer-token", "t", "--tenant", "x"]).unwrap();
        let headers: Vec<(&str, &str)> = s
            .http
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("authorization", "Bearer t"),
                ("x-scope-orgid", "x"),
                ("thanos-tenant", "x"),
            ]
        );
        let logged = format!("{s:?}");
        assert!(
            !logged.contains("Bearer t"),
            "secrets redacted by type: {logged}"
        );
        if std::env::var_os("S3_BUCKET").is_none() && std::env::var_os("OUTPUT_DIR").is_none() {
            let no_dest = Settings::resolve(&opts(&base[..6])).unwrap_err();
            assert!(no_dest.to_string().contains("S3_BUCKET"), "{no_dest}");
        }
    }
}
