//! The running integration stack, as `integration/stack/up.sh` describes it: from the environment,
//! or else from the env file it writes (`target/stack/env`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

pub struct Stack {
    pub thanos_http: String,
    pub thanos_grpc: String,
    pub data_from: i64,
    pub data_to: i64,
    pub data_dir: PathBuf,
    pub s3_endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// The Prometheus' HTTP addresses by instance (`a-0`, `a-1`, `b`): remote read at
    /// `/api/v1/read`, PromQL at `/api/v1/query_range`.
    pub prometheus: Vec<(String, String)>,
    /// The stack's directory: each Prometheus' data in `run/prom-<instance>/data`.
    pub dir: PathBuf,
    /// The Thanos releases built beside the pinned one (`THANOS_OLDER`), oldest first.
    pub thanos_older: Vec<String>,
}

impl Stack {
    /// The HTTP address of the Prometheus of `instance`.
    pub fn prometheus(&self, instance: &str) -> &str {
        &self
            .prometheus
            .iter()
            .find(|(i, _)| i == instance)
            .unwrap_or_else(|| panic!("no Prometheus {instance} in {:?}", self.prometheus))
            .1
    }
}

/// `a=x b=y` as pairs.
fn pairs(v: &str) -> Vec<(String, String)> {
    v.split_whitespace()
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The stack's env file (`STACK_DIR/env`), parsed once.
fn env_file() -> &'static (PathBuf, HashMap<String, String>) {
    static VARS: OnceLock<(PathBuf, HashMap<String, String>)> = OnceLock::new();
    VARS.get_or_init(|| {
        let mut vars: HashMap<String, String> = HashMap::new();
        let dir = std::env::var("STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/stack"));
        if let Ok(text) = std::fs::read_to_string(dir.join("env")) {
            for line in text.lines() {
                if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                    vars.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
        }
        (dir.join("env"), vars)
    })
}

/// A variable of the stack's environment: the process environment wins over the env file.
fn get(k: &str) -> String {
    let (path, vars) = env_file();
    std::env::var(k)
        .ok()
        .or_else(|| vars.get(k).cloned())
        .unwrap_or_else(|| {
            panic!(
                "{k} is not set and {} has no stack environment: start the stack with \
                 integration/stack/up.sh (or run everything with integration/test.sh)",
                path.display()
            )
        })
}

pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| Stack {
        thanos_http: get("THANOS_HTTP"),
        thanos_grpc: get("THANOS_GRPC"),
        data_from: get("DATA_FROM").parse().expect("DATA_FROM is unix seconds"),
        data_to: get("DATA_TO").parse().expect("DATA_TO is unix seconds"),
        data_dir: PathBuf::from(get("DATA_DIR")),
        s3_endpoint: get("S3_ENDPOINT"),
        bucket: get("S3_BUCKET"),
        access_key: get("AWS_ACCESS_KEY_ID"),
        secret_key: get("AWS_SECRET_ACCESS_KEY"),
        prometheus: pairs(&get("PROMETHEUS_URLS")),
        dir: PathBuf::from(get("STACK_DIR")),
        thanos_older: get("THANOS_OLDER")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    })
}

/// The production-shaped part of the stack (`STACK_TOPOLOGY=full`): live scrapes, object
/// storage behind store gateways, a compacted bucket, a receiver, a TLS Querier.
pub struct Topology {
    /// The store gateway over the `thanos` bucket (StoreAPI).
    pub store_grpc: String,
    /// The receiver's StoreAPI.
    pub receive_grpc: String,
    /// The sidecars' StoreAPIs by instance (`a-0`, `a-1`, `b`).
    pub sidecars: Vec<(String, String)>,
    /// The Querier over the compacted bucket's store gateway (StoreAPI and HTTP).
    pub compact_grpc: String,
    pub compact_http: String,
    /// The Querier whose gRPC listener requires TLS and a client certificate.
    pub tls_grpc: String,
    pub tls_ca_file: String,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// A CA that did not sign the server's certificate.
    pub tls_other_ca_file: String,
    /// The range only the store gateway has, `[store_only_from, store_only_to)`.
    pub store_only_from: i64,
    pub store_only_to: i64,
    /// Unix seconds when the live scrapes started, and their interval.
    pub live_from: i64,
    pub live_interval: i64,
    /// The cluster whose Prometheus only remote-writes to the receiver, and its tenant.
    pub receive_cluster: String,
    pub receive_tenant: String,
    /// The cluster an OpenTelemetry Collector scrapes and remote-writes to the same receiver
    /// (no Prometheus), and its tenant.
    pub otel_cluster: String,
    pub otel_tenant: String,
    /// Grafana Mimir (HTTP; remote read at `/prometheus/api/v1/read`), fed by that same
    /// Prometheus under this tenant.
    pub mimir_http: String,
    pub mimir_tenant: String,
    /// The Pushgateway the run metrics go to, and the Prometheus that scrapes it.
    pub pushgateway_url: String,
    pub push_prometheus_url: String,
    /// Late data: the Querier (StoreAPI and HTTP) over a Receive of their own fed by the
    /// Prometheus of these clusters, each through a proxy the test cuts (`LATE_PROXY_URL`'s
    /// port, plus the cluster's index).
    pub late_grpc: String,
    pub late_http: String,
    pub late_clusters: Vec<String>,
    pub late_proxy_url: String,
}

pub fn topology() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(|| {
        assert_eq!(
            get("STACK_TOPOLOGY"),
            "full",
            "the stack runs without its production topology: start it with STACK_TOPOLOGY=full"
        );
        let int = |k: &str| -> i64 { get(k).parse().unwrap_or_else(|_| panic!("{k} is a number")) };
        Topology {
            store_grpc: get("THANOS_STORE_GRPC"),
            receive_grpc: get("THANOS_RECEIVE_GRPC"),
            sidecars: pairs(&get("SIDECARS")),
            compact_grpc: get("THANOS_COMPACT_GRPC"),
            compact_http: get("THANOS_COMPACT_HTTP"),
            tls_grpc: get("THANOS_TLS_GRPC"),
            tls_ca_file: get("TLS_CA_FILE"),
            tls_cert_file: get("TLS_CERT_FILE"),
            tls_key_file: get("TLS_KEY_FILE"),
            tls_other_ca_file: get("TLS_OTHER_CA_FILE"),
            store_only_from: int("STORE_ONLY_FROM"),
            store_only_to: int("STORE_ONLY_TO"),
            live_from: int("LIVE_FROM"),
            live_interval: int("LIVE_INTERVAL"),
            receive_cluster: get("RECEIVE_CLUSTER"),
            receive_tenant: get("RECEIVE_TENANT"),
            otel_cluster: get("OTEL_CLUSTER"),
            otel_tenant: get("OTEL_TENANT"),
            mimir_http: get("MIMIR_HTTP"),
            mimir_tenant: get("MIMIR_TENANT"),
            pushgateway_url: get("PUSHGATEWAY_URL"),
            push_prometheus_url: get("PUSH_PROMETHEUS_URL"),
            late_grpc: get("LATE_THANOS_GRPC"),
            late_http: get("LATE_THANOS_HTTP"),
            late_clusters: get("LATE_CLUSTERS")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            late_proxy_url: get("LATE_PROXY_URL"),
        }
    })
}

/// The generator's ground truth (`truth.json` beside the backfilled data).
pub fn truth() -> serde_json::Value {
    let path = stack().data_dir.join("truth.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("truth.json is JSON")
}

/// An instant query against Thanos Query's HTTP API; returns `data.result`.
pub async fn instant_query(query: &str, time: i64, dedup: bool) -> Vec<serde_json::Value> {
    let url = format!("{}/api/v1/query", stack().thanos_http);
    let resp = reqwest::Client::new()
        .post(&url)
        .form(&[
            ("query", query.to_string()),
            ("time", time.to_string()),
            ("dedup", dedup.to_string()),
            ("partial_response", "false".to_string()),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.expect("query answer is JSON");
    assert!(status.is_success(), "{query}: HTTP {status}: {body}");
    assert_eq!(body["status"], "success", "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A sample value as Prometheus renders it (a JSON string).
pub fn value(v: &serde_json::Value) -> f64 {
    v.as_str()
        .expect("sample values are strings")
        .parse()
        .expect("sample value parses")
}
