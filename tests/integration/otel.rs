//! The seeds' OpenTelemetry Collector → Thanos Receive topology: cluster f has no Prometheus;
//! a Collector (integration/otelcol: the Prometheus receiver, the batch processor, the
//! Prometheus remote-write exporter) scrapes the live target and writes to the stack's
//! Receive under a tenant of its own, its cluster an external label of the exporter. Whatever
//! the Collector adds or does differently (its `job`/`instance` from resource attributes, its
//! `target_info`, staleness from its "no recorded value" flag, its own batching and a restart
//! that replays nothing), the gRPC export equals Thanos Query's PromQL, through the Querier
//! and straight from the Receive.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::exporter::{describe, files, read_json, scratch};
use crate::support::stack::{stack, topology};
use crate::topology::{LIVE_ARGS, METRICS, PREFIX, compare, export, in_cluster, live_windows};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `--store` (the Querier, or the Receive) against the Querier's PromQL over `range`, for the
/// Collector's cluster; the gRPC directory.
fn parity_of(name: &str, store: &str, range: (i64, i64)) -> std::path::PathBuf {
    let (s, t) = (stack(), topology());
    let g = scratch(&format!("{name}-grpc"));
    let h = scratch(&format!("{name}-http"));
    let out = export("grpc", &g, range, store, &s.thanos_http, LIVE_ARGS);
    assert!(out.status.success(), "grpc: {}", describe(&out));
    let out = export("http", &h, range, &s.thanos_grpc, &s.thanos_http, LIVE_ARGS);
    assert!(out.status.success(), "http: {}", describe(&out));
    let p = compare(&g, &h, in_cluster(&t.otel_cluster));
    let windows = ((range.1 - range.0) / 60) as usize;
    assert_eq!(p.files, windows * METRICS, "{name}: {p:?}");
    assert!(p.points > windows * 500, "{name}: {p:?}");
    g
}

/// A metric's series in the Collector cluster's file of the first window under `dir`.
fn labels_of(dir: &Path, metric: &str) -> Vec<serde_json::Value> {
    let t = topology();
    let f = files(dir)
        .into_iter()
        .find(|f| {
            f.starts_with(&format!("{PREFIX}/{}/", t.otel_cluster))
                && f.ends_with(&format!("_{metric}.json.gz"))
        })
        .unwrap_or_else(|| panic!("a {metric} file of the Collector's cluster"));
    read_json(&dir.join(f))["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"].clone())
        .collect()
}

#[test]
fn live_otel_collector_cluster_grpc_equals_http() {
    let t = topology();
    let range = live_windows(t, 2, 20);
    let g = parity_of("otel-query", &stack().thanos_grpc, range);
    // the tenant is the Receive's external label; the replica label is deduplicated away
    let info = labels_of(&g, "pod_info");
    assert_eq!(info[0]["tenant_id"], t.otel_tenant, "{info:?}");
    assert!(info[0].get("receive_replica").is_none(), "{info:?}");
    // the labels the Collector adds to every series (its receiver's scope) stay where PromQL
    // keeps them: through `max without (instance, job)`, not through `max by (...)`
    fn scope(m: &serde_json::Value) -> Option<&str> {
        m.get("otel_scope_name").and_then(|n| n.as_str())
    }
    assert!(
        info.iter()
            .all(|m| scope(m).is_some_and(|n| n.ends_with("prometheusreceiver"))),
        "{info:?}"
    );
    let usage = labels_of(&g, "memory_usage");
    assert!(
        usage
            .iter()
            .all(|m| m["cluster"] == t.otel_cluster && scope(m).is_none()),
        "{usage:?}"
    );
}

#[test]
fn live_otel_collector_straight_from_the_receiver_equals_the_queriers_http() {
    let t = topology();
    let range = live_windows(t, 2, 20);
    let receive = t.receive_grpc.clone();
    parity_of("otel-receive", &receive, range);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_otel_collector_restarted_still_equals_http() {
    // killed as a crashed pod is and started again 20 s later: its queue was in memory, what
    // it held and what it did not scrape meanwhile never arrive, and its new process starts
    // every series afresh (a first sample, no staleness marker for the gap)
    let t = topology();
    live_windows(t, 2, 20);
    let killed = now();
    let restart = tokio::task::spawn_blocking(|| {
        std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/stack/restart.sh"))
            .args(["otelcol", "20"])
            .output()
            .expect("integration/stack/restart.sh")
    })
    .await
    .unwrap();
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    // the window of the restart and the next, settled
    let from = killed.div_euclid(60) * 60;
    let to = from + 2 * 60;
    let wait = to + 20 - now();
    if wait > 0 {
        tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    }
    let range = (from, to);
    let g =
        tokio::task::spawn_blocking(move || parity_of("otel-restart", &stack().thanos_grpc, range))
            .await
            .unwrap();
    assert!(!files(&g).is_empty());
}
