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
}

pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let mut vars: HashMap<String, String> = HashMap::new();
        let dir = std::env::var("STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/stack"));
        if let Ok(text) = std::fs::read_to_string(dir.join("env")) {
            for line in text.lines() {
                if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                    vars.insert(k.to_string(), v.to_string());
                }
            }
        }
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .or_else(|| vars.get(k).cloned())
                .unwrap_or_else(|| {
                    panic!(
                        "{k} is not set and {} has no stack environment: start the stack with \
                         integration/stack/up.sh (or run everything with integration/test.sh)",
                        dir.join("env").display()
                    )
                })
        };
        Stack {
            thanos_http: get("THANOS_HTTP"),
            thanos_grpc: get("THANOS_GRPC"),
            data_from: get("DATA_FROM").parse().expect("DATA_FROM is unix seconds"),
            data_to: get("DATA_TO").parse().expect("DATA_TO is unix seconds"),
            data_dir: PathBuf::from(get("DATA_DIR")),
            s3_endpoint: get("S3_ENDPOINT"),
            bucket: get("S3_BUCKET"),
            access_key: get("AWS_ACCESS_KEY_ID"),
            secret_key: get("AWS_SECRET_ACCESS_KEY"),
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
