//! Bad input: each gets a clear error naming the problem and the fix, its exit code, and
//! never a partial file.

use crate::support::exporter::{describe, export_blocking, files, read_json, scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plaintext_endpoint() {
    let dir = scratch("bad-tls");
    let plain = crate::support::stack::stack()
        .thanos_grpc
        .replace("http://", "https://");
    let out = export_blocking(plain, dir.clone(), 1, vec![]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use http:// instead of https://"), "{err}");
    assert!(files(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_function_in_the_catalog() {
    let dir = scratch("bad-catalog");
    let catalog = dir.join("catalog.yaml");
    std::fs::write(
        &catalog,
        "metrics:\n  p95_latency: 'histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))'\n",
    )
    .unwrap();
    let store = crate::support::stack::stack().thanos_grpc.clone();
    let out = export_blocking(
        store,
        dir.join("out"),
        1,
        vec![("CATALOG_FILE", catalog.display().to_string())],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p95_latency"), "names the entry: {err}");
    assert!(
        err.contains("histogram_quantile"),
        "names the construct: {err}"
    );
    assert!(err.contains("--source http"), "suggests the fix: {err}");
    assert!(files(&dir.join("out")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_without_series_is_an_empty_result() {
    let dir = scratch("bad-empty");
    let catalog = dir.join("catalog.json");
    std::fs::write(
        &catalog,
        r#"{"replace": true, "metrics": {"nothing": "max by (cluster) (no_such_metric_anywhere)", "pod_info": "max without (instance, job) (kube_pod_info)"}}"#,
    )
    .unwrap();
    let store = crate::support::stack::stack().thanos_grpc.clone();
    let out = export_blocking(
        store,
        dir.join("out"),
        1,
        vec![("CATALOG_FILE", catalog.display().to_string())],
    )
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let f = files(&dir.join("out"));
    let empty: Vec<_> = f.iter().filter(|k| k.contains("metric=nothing/")).collect();
    assert_eq!(empty.len(), 2, "one empty file per cluster: {f:?}");
    for k in empty {
        let v = read_json(&dir.join("out").join(k));
        assert_eq!(v["data"]["result"], serde_json::json!([]));
    }
}
