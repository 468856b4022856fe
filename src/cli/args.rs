//! The command line as typed: every flag with its environment variable and help, grouped by
//! what it configures. Nothing here reads the environment beyond clap's `env` or validates
//! more than a value's form; `settings` resolves these into what the commands use.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::parse::{parse_days, parse_duration, parse_time};
use crate::observe::Secret;
use crate::shard::Shard;

/// Where the catalog is evaluated.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// In-process over the Thanos StoreAPI (`thanos.Store/Series`).
    Grpc,
    /// By Thanos Query (or Prometheus) over HTTP `query_range`.
    Http,
    /// In-process over Prometheus remote read (Prometheus, Grafana Mimir): REMOTE_READ_URL.
    RemoteRead,
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
    #[command(flatten, next_help_heading = "Source")]
    pub source: SourceArgs,
    #[command(flatten, next_help_heading = "Destination")]
    pub destination: DestinationArgs,
    #[command(flatten, next_help_heading = "Windows")]
    pub windows: WindowArgs,
    #[command(flatten, next_help_heading = "Connection")]
    pub connection: ConnectionArgs,
    #[command(flatten, next_help_heading = "Logging")]
    pub log: LogArgs,
}

/// Where the catalog is evaluated, and the endpoints it reads from.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
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

    /// Remote read URL for --source remote-read, e.g. http://prometheus:9090/api/v1/read or
    /// http://mimir:8080/prometheus/api/v1/read; repeat it (or separate by commas) for each
    /// Prometheus of an HA pair.
    #[arg(
        long = "remote-read-url",
        env = "REMOTE_READ_URL",
        value_delimiter = ',',
        global = true
    )]
    pub remote_read_urls: Vec<String>,

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

    /// Path of the HTTP API's readiness endpoint, probed before any work when an HTTP address
    /// is configured (--source http, or PROMETHEUS_URL/HOSTNAME set).
    #[arg(
        long,
        env = "METRICS_READINESS_PATH",
        default_value = "/-/ready",
        global = true
    )]
    pub readiness_path: String,

    /// Catalog file (YAML or JSON) extending or replacing the default catalog.
    #[arg(long, env = "CATALOG_FILE", global = true)]
    pub catalog: Option<PathBuf>,

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

    /// Lookback delta of instant selectors; must equal the Querier's --query.lookback-delta.
    #[arg(long, env = "LOOKBACK_DELTA", default_value = "5m", value_parser = parse_duration, global = true)]
    pub lookback_delta: u64,

    /// The Thanos release of the Querier (v0.34.1), whose PromQL the files equal: its engine's
    /// semantics changed in v0.35 and v0.38. auto: read from its HTTP API's
    /// /api/v1/status/buildinfo when its address is known (PROMETHEUS_URL, or HOSTNAME and
    /// PORT), else inferred from its Info answer.
    #[arg(long, env = "QUERIER_VERSION", default_value = "auto", global = true)]
    pub querier_version: String,
}

/// Where the files go.
#[derive(Args, Debug, Clone)]
pub struct DestinationArgs {
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

    /// Deadline of one S3 request attempt, body included (a frozen server is given up on
    /// after this).
    #[arg(long, env = "S3_ATTEMPT_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub s3_attempt_timeout: u64,

    /// Deadline of one S3 operation: all its attempts and the pauses between them.
    #[arg(long, env = "S3_OPERATION_TIMEOUT", default_value = "2m", value_parser = parse_duration, global = true)]
    pub s3_operation_timeout: u64,

    /// IAM role to assume for the S3 writes (STS AssumeRole on top of the default chain).
    #[arg(long, env = "ROLE_ARN", global = true)]
    pub role_arn: Option<String>,

    /// STS endpoint for ROLE_ARN, when not AWS' own (a VPC endpoint, an S3-compatible
    /// server's STS).
    #[arg(long, env = "STS_ENDPOINT", global = true)]
    pub sts_endpoint: Option<String>,

    /// External ID required by the role's trust policy.
    #[arg(long, env = "ROLE_EXTERNAL_ID", hide_env_values = true, global = true)]
    pub role_external_id: Option<Secret>,

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

    /// Key prefix of the daily telemetry CSV files, <TELEMETRY_PREFIX>/<name>/<YYYY-MM-DD>.csv
    /// (Finout's S3 telemetry endpoint); required when the catalog has telemetry entries, and
    /// outside S3_PREFIX.
    #[arg(long, env = "TELEMETRY_PREFIX", global = true)]
    pub telemetry_prefix: Option<String>,
}

/// Which windows are exported, and when.
#[derive(Args, Debug, Clone)]
pub struct WindowArgs {
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

    /// How long after a window ends before it is exported (late samples, sidecar lag).
    #[arg(long, env = "SETTLE_DELAY", default_value = "10m", value_parser = parse_duration, global = true)]
    pub settle_delay: u64,

    /// A run exports the complete windows once the oldest of them ended this long ago (after
    /// SETTLE_DELAY too), all together: runs in between export nothing. Fewer, longer requests
    /// cost the monitoring stack less; a window's files are then written at most this long
    /// plus the CronJob's period after it ends (5h30m + 30m: every hour within 6 h). 0: every
    /// window as soon as it settled.
    #[arg(long, env = "BATCH_DELAY", default_value = "5h30m", value_parser = parse_duration, global = true)]
    pub batch_delay: u64,

    /// How long exported files are kept: days (30), or a duration (30d, 12h); 0 keeps them
    /// forever.
    #[arg(long = "retention-days", env = "RETENTION_DAYS", default_value = "30", value_parser = parse_days, global = true)]
    pub retention: u64,

    /// This pod's shard, i/N: it exports only the clusters whose name hashes to i, and keeps
    /// its own state. Defaults to JOB_COMPLETION_INDEX/JOB_COMPLETIONS in an Indexed Job.
    #[arg(long, env = "SHARD", value_parser = Shard::parse, global = true)]
    pub shard: Option<Shard>,

    /// How long a source (a cluster's Prometheus, a store) that served exported windows may be
    /// absent from the Querier before windows are exported without it, a warning per run
    /// naming it; until then its windows are refused (exit 3). It is expected again as soon as
    /// it is back. 0: never export without it.
    #[arg(long, env = "ABSENT_CLUSTER_GRACE", default_value = "6h", value_parser = parse_duration, global = true)]
    pub absent_cluster_grace: u64,

    /// A metric every cluster has: its newest sample per cluster tells how far the cluster's
    /// data has reached the stores (a remote-write backlog, an agent restart), and a `run`
    /// writes a window only once every cluster's is past its end. Empty: not checked.
    #[arg(
        long,
        env = "WATERMARK_METRIC",
        default_value = "kube_node_info",
        global = true
    )]
    pub watermark_metric: String,

    /// How long after its end a window waits for a cluster whose data lags; then it is written
    /// without that cluster's late data, and written again when it arrives. 0: never wait.
    #[arg(long, env = "LATE_DATA_GRACE", default_value = "3h", value_parser = parse_duration, global = true)]
    pub late_data_grace: u64,

    /// How long after its end a window written without a lagging cluster is still written again
    /// when that cluster's data arrives; a cluster without data for this long is no longer
    /// waited for.
    #[arg(long, env = "LATE_DATA_HORIZON", default_value = "24h", value_parser = parse_duration, global = true)]
    pub late_data_horizon: u64,

    /// After SIGTERM or SIGINT, how long the window in flight may take to finish (its uploads
    /// and the state) before it is abandoned and the run exits; keep it below the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration, global = true)]
    pub shutdown_timeout: u64,
}

/// TLS, authentication, deadlines, retries and concurrency, for every endpoint.
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
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

    /// Static token, sent as the `token` header (Finout's API token authentication).
    #[arg(
        long,
        env = "PROMETHEUS_AUTH_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub auth_token: Option<Secret>,

    /// Bearer token, sent as `Authorization: Bearer`.
    #[arg(
        long,
        env = "PROMETHEUS_BEARER_AUTH_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub bearer_token: Option<Secret>,

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
    pub password: Option<Secret>,

    /// Tenant, sent as X-Scope-OrgID and THANOS-TENANT.
    #[arg(long, env = "PROMETHEUS_X_SCOPE_ORGID", global = true)]
    pub tenant: Option<String>,

    /// Deadline of one StoreAPI call (its whole stream) or HTTP query (its whole answer).
    #[arg(long, env = "QUERY_TIMEOUT", default_value = "2m", value_parser = parse_duration, global = true)]
    pub timeout: u64,

    /// A StoreAPI call that receives nothing (no answer, no frame) for this long fails and is
    /// retried: a frozen or unreachable Querier is noticed in this time.
    #[arg(long, env = "QUERY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration, global = true)]
    pub idle_timeout: u64,

    /// Deadline of a TCP (and TLS) connection to the StoreAPI, the HTTP API, S3 and STS.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub connect_timeout: u64,

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

    /// Batches of windows (WINDOWS_PER_REQUEST) evaluated at once; memory grows with it.
    #[arg(long, env = "WINDOW_CONCURRENCY", default_value_t = 1, global = true)]
    pub window_concurrency: usize,

    /// Windows one StoreAPI Series request may cover when several are due (a backfill, a
    /// catch-up): fewer, longer requests cost the stores less. A request's answer is set
    /// aside window by window in SPILL_DIR and evaluated one window at a time, so memory is
    /// one window's; a request covers as many windows as ~64 MiB of chunks hold, by what
    /// the run's first window measured. Each window is still evaluated from the chunks a
    /// request for it alone would get; clusters served by a store that sends whole chunks (a
    /// store gateway) are asked one window per request. Also the windows whose files are
    /// written before the state is saved.
    #[arg(long, env = "WINDOWS_PER_REQUEST", default_value_t = 24, global = true)]
    pub windows_per_request: usize,

    /// Where requests over several windows set their answers aside (unlinked files of
    /// chunks, up to ~64 MiB per request in flight: CONCURRENCY x 64 MiB); the temporary
    /// directory (TMPDIR, else /tmp) when unset.
    #[arg(long, env = "SPILL_DIR", global = true)]
    pub spill_dir: Option<PathBuf>,

    /// Output points per window (series times steps) up to which metrics and clusters share
    /// one StoreAPI Series request; a result larger than this is asked alone, one cluster at
    /// a time. The results of a request's window are held until its files are written, so
    /// this bounds the exporter's memory per request in flight (2^19 points, ~8 MiB of
    /// values).
    #[arg(long, env = "REQUEST_POINTS", default_value_t = crate::source::grpc::REQUEST_POINTS, global = true)]
    pub request_points: u64,
}

/// Log output.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
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

    /// Prometheus Pushgateway to push each run's outcome to (job storeapi-exporter, grouped by
    /// CLUSTER_NAME and shard), e.g. http://pushgateway.monitoring:9091; a failed push is a
    /// warning, never a failed run.
    #[arg(long, env = "PUSHGATEWAY_URL", global = true)]
    pub pushgateway_url: Option<String>,

    /// How often progress is logged, and after how long without progress a call in flight is
    /// logged with what it waits for.
    #[arg(long, env = "PROGRESS_INTERVAL", default_value = "10s", value_parser = parse_duration, global = true)]
    pub progress_interval: u64,
}

/// Flags of the `bench` command.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// First window start, unix seconds or RFC 3339.
    #[arg(long, value_parser = parse_time)]
    pub from: i64,
    /// End of the range (exclusive), unix seconds or RFC 3339.
    #[arg(long, value_parser = parse_time)]
    pub to: i64,
    /// Directory for bench.json, bench.md, bench.svg and the exported files.
    #[arg(long)]
    pub out: PathBuf,
    /// Runs per source; the sources alternate, and the report shows the median run.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Sources to compare (grpc, http, grpc-gzip: gRPC with gzip-compressed responses,
    /// remote-read: Prometheus' remote read at REMOTE_READ_URL, no sidecar and no Querier).
    #[arg(long, value_delimiter = ',', default_value = "grpc,http")]
    pub sources: Vec<Variant>,
    /// Instead of exporting the span once per source: a simulated day of the CronJob over it
    /// (a `run` every 30 minutes with its state, over the StoreAPI at the settings given, or
    /// over remote read with --sources remote-read,http, and over HTTP as Finout's exporter
    /// runs), with each window's delay (DIR/steady.json, steady.md). --from and --to bound the
    /// day.
    #[arg(long)]
    pub steady: bool,
    /// Directory of the stack's pid files (`<name>.pid`, the pid first): the CPU and peak
    /// memory of every process (Prometheus, sidecars, store gateways, Querier) per run.
    #[arg(long, env = "BENCH_STACK_PIDS")]
    pub stack_pids: Option<PathBuf>,
}

/// One way of exporting, run as `export --source …`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Grpc,
    Http,
    GrpcGzip,
    // Prometheus' remote read straight from the exporter: no sidecar, no Querier on the way
    RemoteRead,
}

impl Variant {
    /// The name in reports and in bench.json.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Grpc => "grpc",
            Variant::Http => "http",
            Variant::GrpcGzip => "grpc-gzip",
            Variant::RemoteRead => "remote-read",
        }
    }

    pub fn export_flags(self) -> &'static [&'static str] {
        match self {
            Variant::Grpc => &["--source", "grpc"],
            Variant::Http => &["--source", "http"],
            Variant::GrpcGzip => &["--source", "grpc", "--grpc-gzip"],
            Variant::RemoteRead => &["--source", "remote-read"],
        }
    }
}
