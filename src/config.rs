//! Command line and environment. Every setting is a flag and an environment variable; Finout's
//! exporter's variable names are honoured as they are.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use thiserror::Error;

use crate::shard::Shard;

/// Exports Kubernetes cost-allocation metrics from Thanos to S3 in Finout's layout, reading raw
/// chunks over the StoreAPI (gRPC) and evaluating the metric catalog in-process.
#[derive(Parser, Debug)]
#[command(name = "storeapi-exporter", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub opts: Options,
}

/// What to do; without a subcommand, `run`.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// The CronJob: export every complete window since the saved state, apply retention, exit.
    Run,
    /// Export the windows starting in [--from, --to); never reads or writes state.
    Export {
        /// First window start to export, unix seconds or RFC 3339 (rounded up to a window).
        #[arg(long, value_parser = parse_time)]
        from: i64,
        /// End of the range (exclusive), unix seconds or RFC 3339.
        #[arg(long, value_parser = parse_time)]
        to: i64,
    },
    /// Export the same windows over --source grpc and --source http, alternating, and report
    /// wall time, bytes, memory and the Querier's CPU and memory for each (DIR/bench.json,
    /// bench.md, bench.svg).
    Bench(crate::bench::BenchArgs),
}

/// Where the catalog is evaluated.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// In-process over the Thanos StoreAPI (`thanos.Store/Series`).
    Grpc,
    /// By Thanos Query (or Prometheus) over HTTP `query_range`.
    Http,
}

/// Log output format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
}

/// Settings shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// StoreAPI gRPC endpoint, e.g. http://thanos-query.monitoring:10901 (https:// for TLS).
    /// Defaults to HOSTNAME:10901 when HOSTNAME names another host.
    #[arg(long, env = "STORE_ENDPOINT", global = true)]
    pub store: Option<String>,

    /// Where the catalog is evaluated.
    #[arg(
        long,
        env = "SOURCE",
        value_enum,
        default_value = "grpc",
        global = true
    )]
    pub source: SourceKind,

    /// Prometheus-compatible HTTP API base URL; overrides SCHEME, HOSTNAME, PORT, PATH_PREFIX.
    #[arg(long, env = "PROMETHEUS_URL", global = true)]
    pub prometheus_url: Option<String>,

    /// HTTP API host (Finout's HOSTNAME; the environment value is ignored when it is this
    /// machine's own hostname, as Kubernetes sets it to the pod name).
    #[arg(long, global = true)]
    pub hostname: Option<String>,

    /// HTTP API port.
    #[arg(long, env = "PORT", default_value_t = 9090, global = true)]
    pub port: u16,

    /// HTTP API scheme.
    #[arg(long, env = "SCHEME", default_value = "http", global = true)]
    pub scheme: String,

    /// Path prefix of the HTTP API, when served under a sub-path (e.g. data/metrics).
    #[arg(long, env = "PATH_PREFIX", global = true)]
    pub path_prefix: Option<String>,

    /// Write the files under this directory instead of S3 (DIR/<S3_PREFIX>/<cluster>/...).
    #[arg(long, env = "OUTPUT_DIR", global = true)]
    pub output_dir: Option<PathBuf>,

    /// S3 bucket (required unless --output-dir).
    #[arg(long, env = "S3_BUCKET", global = true)]
    pub s3_bucket: Option<String>,

    /// Key prefix of every object, e.g. k8s/prometheus.
    #[arg(long, env = "S3_PREFIX", global = true)]
    pub s3_prefix: Option<String>,

    /// S3-compatible endpoint (path-style addressing), e.g. http://127.0.0.1:9000.
    #[arg(long, env = "S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,

    /// Region of the bucket; the AWS default chain (AWS_REGION, profile, instance metadata)
    /// when unset.
    #[arg(long, env = "S3_REGION", global = true)]
    pub s3_region: Option<String>,

    /// Path-style addressing (endpoint/bucket/key) instead of virtual-hosted style; defaults
    /// to true with --s3-endpoint, false for AWS.
    #[arg(long, env = "S3_FORCE_PATH_STYLE", global = true)]
    pub s3_path_style: Option<bool>,

    /// Attempts per S3 request (first try included) on throttling, 5xx and network errors.
    #[arg(long, env = "S3_MAX_ATTEMPTS", default_value_t = 5, global = true)]
    pub s3_max_attempts: u32,

    /// IAM role to assume for the S3 writes (STS AssumeRole on top of the default chain).
    #[arg(long, env = "ROLE_ARN", global = true)]
    pub role_arn: Option<String>,

    /// STS endpoint for ROLE_ARN, when not AWS' own (a VPC endpoint, an S3-compatible
    /// server's STS).
    #[arg(long, env = "STS_ENDPOINT", global = true)]
    pub sts_endpoint: Option<String>,

    /// External ID required by the role's trust policy.
    #[arg(long, env = "ROLE_EXTERNAL_ID", hide_env_values = true, global = true)]
    pub role_external_id: Option<String>,

    /// Folder for series without a cluster label, and for the exporter's state.
    #[arg(long, env = "CLUSTER_NAME", global = true)]
    pub cluster_name: Option<String>,

    /// Label whose value names the cluster of each series.
    #[arg(
        long,
        env = "CLUSTER_LABEL_NAME",
        default_value = "cluster",
        global = true
    )]
    pub cluster_label: String,

    /// Seconds per exported file (window).
    #[arg(long, env = "TIME_FRAME", default_value_t = 3600, global = true)]
    pub time_frame: u64,

    /// Evaluation step in seconds; divides TIME_FRAME.
    #[arg(long, env = "QUERY_STEP", default_value_t = 60, global = true)]
    pub step: u64,

    /// How far back the first run starts: days (3), or a duration (3d, 72h).
    #[arg(long, env = "BACKFILL_DAYS", default_value = "3d", value_parser = parse_days, global = true)]
    pub backfill: u64,

    /// The clock, unix seconds or RFC 3339 (for tests and replays).
    #[arg(long, env = "EXPORTER_NOW", value_parser = parse_time, global = true)]
    pub now: Option<i64>,

    /// Lookback delta of instant selectors; must equal the Querier's --query.lookback-delta.
    #[arg(long, env = "LOOKBACK_DELTA", default_value = "5m", value_parser = parse_duration, global = true)]
    pub lookback_delta: u64,

    /// How long after a window ends before it is exported (late samples, sidecar lag).
    #[arg(long, env = "SETTLE_DELAY", default_value = "10m", value_parser = parse_duration, global = true)]
    pub settle_delay: u64,

    /// How long exported files are kept: days (30), or a duration (30d, 12h); 0 keeps them
    /// forever.
    #[arg(long = "retention-days", env = "RETENTION_DAYS", default_value = "30", value_parser = parse_days, global = true)]
    pub retention: u64,

    /// Path of the HTTP API's readiness endpoint, probed before any work when an HTTP address
    /// is configured (--source http, or PROMETHEUS_URL/HOSTNAME set).
    #[arg(
        long,
        env = "METRICS_READINESS_PATH",
        default_value = "/-/ready",
        global = true
    )]
    pub readiness_path: String,

    /// Labels that tell HA replicas apart (comma-separated), as the Querier's
    /// --query.replica-label.
    #[arg(
        long = "replica-label",
        env = "REPLICA_LABELS",
        value_delimiter = ',',
        default_value = "replica,prometheus_replica,receive_replica,rule_replica",
        global = true
    )]
    pub replica_labels: Vec<String>,

    /// Catalog file (YAML or JSON) extending or replacing the default catalog.
    #[arg(long, env = "CATALOG_FILE", global = true)]
    pub catalog: Option<PathBuf>,

    /// CA bundle (PEM) to verify the endpoints with, instead of the system roots.
    #[arg(long, env = "TLS_CA_FILE", global = true)]
    pub tls_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for mTLS to the StoreAPI.
    #[arg(long, env = "TLS_CERT_FILE", global = true, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Client key (PEM) for mTLS to the StoreAPI.
    #[arg(long, env = "TLS_KEY_FILE", global = true, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Server name to verify in TLS, when it differs from the endpoint's host.
    #[arg(long, env = "TLS_SERVER_NAME", global = true)]
    pub tls_server_name: Option<String>,

    /// Deadline of one StoreAPI call or HTTP query.
    #[arg(long, env = "QUERY_TIMEOUT", default_value = "5m", value_parser = parse_duration, global = true)]
    pub timeout: u64,

    /// Largest StoreAPI response frame accepted, bytes.
    #[arg(long, env = "GRPC_MAX_MESSAGE_BYTES", default_value_t = 64 << 20, global = true)]
    pub max_message_bytes: usize,

    /// Ask the StoreAPI to gzip its responses.
    #[arg(long, env = "GRPC_GZIP", global = true)]
    pub grpc_gzip: bool,

    /// Attempts per window before giving up on retryable errors.
    #[arg(long, env = "RETRIES", default_value_t = 5, global = true)]
    pub retries: u32,

    /// Streams or queries in flight at once, and uploads in flight at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4, global = true)]
    pub concurrency: usize,

    /// This pod's shard, i/N: it exports only the clusters whose name hashes to i, and keeps
    /// its own state. Defaults to JOB_COMPLETION_INDEX/JOB_COMPLETIONS in an Indexed Job.
    #[arg(long, env = "SHARD", value_parser = Shard::parse, global = true)]
    pub shard: Option<Shard>,

    /// Windows evaluated at once. 1 keeps memory at one window's output; 2 overlaps a window's
    /// writing with the next one's streams (measured, docs/benchmarks.md: 3 % less wall time,
    /// 1.5x the memory).
    #[arg(long, env = "WINDOW_CONCURRENCY", default_value_t = 1, global = true)]
    pub window_concurrency: usize,

    /// Static token, sent as the `token` header (Finout's API token authentication).
    #[arg(
        long,
        env = "PROMETHEUS_AUTH_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub auth_token: Option<String>,

    /// Bearer token, sent as `Authorization: Bearer`.
    #[arg(
        long,
        env = "PROMETHEUS_BEARER_AUTH_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub bearer_token: Option<String>,

    /// Basic auth user.
    #[arg(long, env = "PROMETHEUS_USERNAME", global = true)]
    pub username: Option<String>,

    /// Basic auth password.
    #[arg(
        long,
        env = "PROMETHEUS_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,

    /// Tenant, sent as X-Scope-OrgID and THANOS-TENANT.
    #[arg(long, env = "PROMETHEUS_X_SCOPE_ORGID", global = true)]
    pub tenant: Option<String>,

    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. info or storeapi_exporter=debug.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
}

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
    #[error("{0}")]
    Invalid(String),
}

/// Parses unix seconds or an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("{s:?} is neither unix seconds nor RFC 3339 ({e})"))
}

/// Parses a duration: a number with a unit s, m, h or d (plain numbers are seconds).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("{s:?} is not a duration (e.g. 300s, 5m, 1h, 3d)"))
}

/// Parses BACKFILL_DAYS: a plain number is days (Finout's form), else a duration.
pub fn parse_days(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(days) => Ok(days * 86_400),
        Err(_) => parse_duration(s),
    }
}

fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The HOSTNAME environment value, unless it is this machine's own name (Kubernetes sets
/// HOSTNAME to the pod name in every container).
fn env_hostname() -> Option<String> {
    let h = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty())?;
    match machine_hostname() {
        Some(own) if own == h => None,
        _ => Some(h),
    }
}

impl Options {
    /// The StoreAPI endpoint.
    pub fn store_endpoint(&self) -> Result<String, ConfigError> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        let host = self.hostname.clone().or_else(env_hostname);
        host.map(|h| format!("http://{h}:10901"))
            .ok_or(ConfigError::NoStore)
    }

    /// The HTTP API base URL.
    pub fn http_base(&self) -> String {
        if let Some(u) = &self.prometheus_url {
            return u.trim_end_matches('/').to_string();
        }
        let host = self
            .hostname
            .clone()
            .or_else(env_hostname)
            .unwrap_or_else(|| "localhost".to_string());
        let mut base = format!("{}://{}:{}", self.scheme, host, self.port);
        if let Some(p) = self.path_prefix.as_deref().map(|p| p.trim_matches('/'))
            && !p.is_empty()
        {
            base.push('/');
            base.push_str(p);
        }
        base
    }

    /// Auth and tenant headers, the same for gRPC metadata (lowercase) and HTTP.
    pub fn auth_headers(&self) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(t) = &self.bearer_token {
            h.push(("authorization".to_string(), format!("Bearer {t}")));
        } else if let (Some(u), Some(p)) = (&self.username, &self.password) {
            use base64_lite::encode;
            h.push((
                "authorization".to_string(),
                format!("Basic {}", encode(format!("{u}:{p}").as_bytes())),
            ));
        }
        if let Some(t) = &self.auth_token {
            h.push(("token".to_string(), t.clone()));
        }
        if let Some(t) = &self.tenant {
            h.push(("x-scope-orgid".to_string(), t.clone()));
            h.push(("thanos-tenant".to_string(), t.clone()));
        }
        h
    }

    /// Checks what every command needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.step == 0 || self.time_frame == 0 || !self.time_frame.is_multiple_of(self.step) {
            return Err(ConfigError::Step {
                step: self.step,
                time_frame: self.time_frame,
            });
        }
        if self.s3_prefix.is_none() {
            return Err(ConfigError::Missing(
                "the key prefix",
                "S3_PREFIX (or --s3-prefix)",
            ));
        }
        if self.cluster_name.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Missing(
                "the cluster name",
                "CLUSTER_NAME (or --cluster-name)",
            ));
        }
        if self.output_dir.is_none() && self.s3_bucket.is_none() {
            return Err(ConfigError::Missing(
                "a destination",
                "S3_BUCKET (or --s3-bucket), or OUTPUT_DIR (or --output-dir) for a local directory",
            ));
        }
        if self.concurrency == 0 || self.window_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "CONCURRENCY and WINDOW_CONCURRENCY must be at least 1".into(),
            ));
        }
        if let Some(name) = &self.cluster_name
            && (name.contains('/') || name == "." || name == "..")
        {
            return Err(ConfigError::Invalid(format!(
                "CLUSTER_NAME {name:?} must be one path segment (no '/')"
            )));
        }
        Ok(())
    }

    /// Whether an HTTP API address was given (for the readiness probe): `--source http`, or
    /// PROMETHEUS_URL / HOSTNAME set to another host.
    pub fn http_configured(&self) -> bool {
        self.source == SourceKind::Http
            || self.prometheus_url.is_some()
            || self.hostname.is_some()
            || env_hostname().is_some()
    }

    /// This pod's shard, from --shard or an Indexed Job's environment; none for one shard.
    pub fn shard(&self) -> Result<Option<Shard>, ConfigError> {
        let shard = match self.shard {
            Some(s) => Some(s),
            None => Shard::from_job_env(
                std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
                std::env::var("JOB_COMPLETIONS").ok().as_deref(),
            )
            .transpose()
            .map_err(ConfigError::Invalid)?,
        };
        Ok(shard.filter(|s| s.count > 1))
    }

    /// Per-call deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// The effective configuration, secrets redacted, for the start-up log.
    pub fn redacted(&self) -> String {
        let mut o = self.clone();
        for s in [
            &mut o.auth_token,
            &mut o.bearer_token,
            &mut o.password,
            &mut o.role_external_id,
        ] {
            if s.is_some() {
                *s = Some("<redacted>".into());
            }
        }
        format!("{o:?}")
    }
}

/// Base64 for basic auth, so no crate is needed for eight lines.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1761868800").unwrap(), 1_761_868_800);
        assert_eq!(parse_time("2025-10-31T00:00:00Z").unwrap(), 1_761_868_800);
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_duration("5m").unwrap(), 300);
        assert_eq!(parse_duration("300").unwrap(), 300);
        assert_eq!(parse_days("3").unwrap(), 3 * 86_400);
        assert_eq!(parse_days("3d").unwrap(), 3 * 86_400);
        assert_eq!(parse_days("72h").unwrap(), 3 * 86_400);
        assert!(parse_days("3 weeks").is_err());
    }

    #[test]
    fn basic_auth_encoding() {
        assert_eq!(base64_lite::encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_lite::encode(b"a"), "YQ==");
        assert_eq!(base64_lite::encode(b"ab"), "YWI=");
    }

    #[test]
    fn hostname_equal_to_the_machine_is_not_the_thanos_host() {
        let cli = Cli::parse_from(["storeapi-exporter", "--s3-prefix", "p"]);
        // SAFETY: tests in this module do not read HOSTNAME concurrently
        if let Some(own) = machine_hostname() {
            unsafe { std::env::set_var("HOSTNAME", &own) };
            assert!(matches!(
                cli.opts.store_endpoint(),
                Err(ConfigError::NoStore)
            ));
            assert_eq!(cli.opts.http_base(), "http://localhost:9090");
        }
        unsafe { std::env::set_var("HOSTNAME", "thanos-query.monitoring") };
        assert_eq!(
            cli.opts.store_endpoint().unwrap(),
            "http://thanos-query.monitoring:10901"
        );
        assert_eq!(cli.opts.http_base(), "http://thanos-query.monitoring:9090");
        unsafe { std::env::remove_var("HOSTNAME") };
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
