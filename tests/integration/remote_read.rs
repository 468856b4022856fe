//! `--source remote-read` against the stack's real servers: one Prometheus equals its own
//! `query_range` (its external labels added), the HA pair's two Prometheus (two URLs) equal
//! Thanos Query's deduplicated PromQL, over the whole data (the month boundary, counter
//! resets, churn), and every Prometheus of clusters a and b read together equals it over live
//! windows, byte for byte; Grafana Mimir equals its own `query_range` over live windows, under
//! its tenant, byte for byte.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::limits::{Procs, free_port, stores_seen, thanos_script};
use crate::support::exporter::{
    as_strs, describe, export_args, exporter, files, read_json, scratch,
};
use crate::support::stack::{stack, topology};
use crate::topology::{LIVE_ARGS, METRICS, PREFIX, clusters_of, compare, in_cluster, live_windows};

/// `export` of `[from, to)` into `dir` over `source`, with `env` on top of the prefix and
/// cluster name.
fn export(
    source: &str,
    dir: &Path,
    (from, to): (i64, i64),
    env: &[(&str, &str)],
    extra: &[&str],
) -> Output {
    let args = export_args(source, dir, from, to);
    let mut all = vec![("S3_PREFIX", PREFIX), ("CLUSTER_NAME", "home")];
    all.extend_from_slice(env);
    exporter(&as_strs(&args, extra), &all)
}

/// Remote read of the stack's whole data from these Prometheus instances.
fn remote_read(name: &str, instances: &[&str]) -> PathBuf {
    let s = stack();
    let urls: Vec<String> = instances
        .iter()
        .map(|i| format!("{}/api/v1/read", s.prometheus(i)))
        .collect();
    let dir = scratch(name);
    let out = export(
        "remote-read",
        &dir,
        (s.data_from, s.data_to),
        &[("REMOTE_READ_URL", &urls.join(","))],
        &[],
    );
    assert!(
        out.status.success(),
        "remote read from {instances:?}: {}",
        describe(&out)
    );
    dir
}

/// Thanos Query's deduplicated PromQL over the whole data, from a Querier of its own over the
/// sidecars of these instances only (the stack's main Querier also reads object storage, which
/// holds the day before the data and the same blocks again).
async fn thanos_over_sidecars(name: &str, instances: &[&str]) -> PathBuf {
    let (s, t) = (stack(), topology());
    let dir = scratch(name);
    let (hp, gp) = (free_port(), free_port());
    let mut args = vec![
        thanos_script(),
        "query".into(),
        format!("--http-address=127.0.0.1:{hp}"),
        format!("--grpc-address=127.0.0.1:{gp}"),
        "--query.replica-label=replica".into(),
    ];
    for i in instances {
        let (_, url) = t
            .sidecars
            .iter()
            .find(|(inst, _)| inst == i)
            .unwrap_or_else(|| panic!("a sidecar for {i}"));
        args.push(format!("--endpoint={}", url.trim_start_matches("http://")));
    }
    let mut procs = Procs::new();
    procs.start("bash", &args, dir.with_extension("log"));
    let http = format!("http://127.0.0.1:{hp}");
    let n = instances.len();
    procs
        .wait_for("thanos query to see the sidecars", || {
            let u = http.clone();
            async move { stores_seen(u).await == n }
        })
        .await;
    let range = (s.data_from, s.data_to);
    let out_dir = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        export("http", &out_dir, range, &[("PROMETHEUS_URL", &http)], &[])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "http export: {}", describe(&out));
    drop(procs);
    dir
}

fn windows() -> usize {
    let s = stack();
    ((s.data_to - s.data_from) / 3600) as usize
}

/// Prometheus' own `query_range` of every catalog entry over the whole data, from the
/// Prometheus of `instance`, with its external labels `labels` added to each series (its API
/// does not add them; the exporter reads them with the series).
fn prometheus_own(name: &str, instance: &str, labels: &[(&str, &str)]) -> PathBuf {
    let s = stack();
    let dir = scratch(name);
    let out = export(
        "http",
        &dir,
        (s.data_from, s.data_to),
        &[
            ("PROMETHEUS_URL", s.prometheus(instance)),
            ("CLUSTER_NAME", labels[0].1),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{instance}'s query_range: {}",
        describe(&out)
    );
    for f in files(&dir) {
        let path = dir.join(&f);
        let mut v = read_json(&path);
        for series in v["data"]["result"].as_array_mut().unwrap() {
            let metric = series["metric"].as_object_mut().unwrap();
            for (k, value) in labels {
                metric.insert(k.to_string(), serde_json::json!(value));
            }
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, v.to_string().as_bytes()).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_prometheus_equals_its_own_query_range() {
    // one server is read as it reads itself: counter resets handled by its rate inside each
    // range (no running total from the request's first sample, as Thanos reads), no replica
    // lanes; the stack's Prometheus is 2.x, so ranges closed on the left. Its external labels
    // (cluster b, replica b) are added to its answer, the replica label dropped as always.
    let (oracle, rr) = tokio::task::spawn_blocking(|| {
        (
            prometheus_own("remote-read-b-own", "b", &[("cluster", "b")]),
            remote_read("remote-read-b", &["b"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        clusters_of(&rr),
        ["b"],
        "a Prometheus serves its own cluster"
    );
    let p = compare(&rr, &oracle, |_| true);
    assert_eq!(p.files, windows() * METRICS, "{p:?}");
    assert!(p.points > 100_000, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_pair_read_from_both_equals_thanos_querys_deduplication() {
    // the replicas scrape apart and one of them has a gap (hour 5): deduplicated over
    // replica as the Querier does over their sidecars
    let oracle = thanos_over_sidecars("remote-read-a-thanos", &["a-0", "a-1"]).await;
    let rr = tokio::task::spawn_blocking(|| remote_read("remote-read-a", &["a-0", "a-1"]))
        .await
        .unwrap();
    assert_eq!(clusters_of(&rr), ["a"]);
    let p = compare(&rr, &oracle, |_| true);
    assert_eq!(p.files, windows() * METRICS, "{p:?}");
    assert!(p.points > 100_000, "{p:?}");
    let pod_info = files(&rr)
        .into_iter()
        .find(|f| f.ends_with("_pod_info.json.gz"))
        .unwrap();
    let v = read_json(&rr.join(pod_info));
    assert!(
        v["data"]["result"][0]["metric"].get("replica").is_none(),
        "the replica label is dropped: {v}"
    );
}

#[test]
fn live_every_prometheus_read_directly_equals_thanos_query() {
    // The deployment that skips the sidecars and the Querier (every hour at once at a third of
    // the stack's CPU): every Prometheus of clusters a and b, the HA pair's two replicas
    // included, read over remote read; the oracle is the main Querier's PromQL over their
    // sidecars, on live scrapes (head chunks, replicas scraping apart, staleness markers)
    let (s, t) = (stack(), topology());
    let range = live_windows(t, 2, 20);
    let urls: Vec<String> = ["a-0", "a-1", "b"]
        .iter()
        .map(|i| format!("{}/api/v1/read", s.prometheus(i)))
        .collect();
    let rr = scratch("remote-read-live");
    let out = export(
        "remote-read",
        &rr,
        range,
        &[("REMOTE_READ_URL", &urls.join(","))],
        LIVE_ARGS,
    );
    assert!(out.status.success(), "remote read: {}", describe(&out));
    let http = scratch("remote-read-live-http");
    let oracle = export(
        "http",
        &http,
        range,
        &[("PROMETHEUS_URL", &s.thanos_http)],
        LIVE_ARGS,
    );
    assert!(oracle.status.success(), "http: {}", describe(&oracle));
    assert_eq!(clusters_of(&rr), ["a", "b"]);
    let a_or_b = |f: &str| in_cluster("a")(f) || in_cluster("b")(f);
    let p = compare(&rr, &http, a_or_b);
    let windows = ((range.1 - range.0) / 60) as usize;
    assert_eq!(p.files, windows * METRICS * 2, "{p:?}");
    assert!(p.points > windows * 2000, "{p:?}");
    assert_eq!(p.identical, p.files, "byte for byte: {p:?}");
}

/// Remote read of Mimir under `tenant` (none: no header).
fn mimir_remote_read(dir: &Path, range: (i64, i64), tenant: Option<&str>) -> Output {
    let t = topology();
    let url = format!("{}/prometheus/api/v1/read", t.mimir_http);
    let mut env = vec![("REMOTE_READ_URL", url.as_str())];
    if let Some(tenant) = tenant {
        env.push(("PROMETHEUS_X_SCOPE_ORGID", tenant));
    }
    export("remote-read", dir, range, &env, LIVE_ARGS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mimir_equals_its_own_query_range() {
    // Mimir's chunks are rebuilt from its ingesters' samples and reach outside the range: cut
    // here; its PromQL is the oracle, and the files read from one Mimir tenant follow it: raw
    // counters (its rate handles resets inside each range), so the rate entries too are byte
    // for byte Mimir's
    let t = topology();
    let range = live_windows(t, 2, 20);
    let rr = scratch("remote-read-mimir");
    let http = scratch("remote-read-mimir-http");
    let (rr2, http2) = (rr.clone(), http.clone());
    let (out, oracle) = tokio::task::spawn_blocking(move || {
        let t = topology();
        let out = mimir_remote_read(&rr2, range, Some(&t.mimir_tenant));
        let base = format!("{}/prometheus", t.mimir_http);
        let oracle = export(
            "http",
            &http2,
            range,
            &[
                ("PROMETHEUS_URL", &base),
                ("METRICS_READINESS_PATH", "/api/v1/status/buildinfo"),
                ("PROMETHEUS_X_SCOPE_ORGID", &t.mimir_tenant),
            ],
            LIVE_ARGS,
        );
        (out, oracle)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "remote read from mimir: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Grafana Mimir"),
        "the server is told apart by its build info: {}",
        describe(&out)
    );
    assert!(
        oracle.status.success(),
        "mimir's query_range: {}",
        describe(&oracle)
    );
    assert_eq!(
        clusters_of(&rr),
        std::slice::from_ref(&t.receive_cluster),
        "the cluster Mimir is fed"
    );
    let p = compare(&rr, &http, |_| true);
    let windows = ((range.1 - range.0) / 60) as usize;
    assert_eq!(p.files, windows * METRICS, "{p:?}");
    assert!(p.points > windows * 1000, "{p:?}");
    assert_eq!(p.identical, p.files, "byte for byte: {p:?}");
}

#[test]
fn live_mimir_under_a_wrong_tenant_or_none() {
    let t = topology();
    let range = live_windows(t, 1, 20);
    // another tenant: Mimir answers with nothing, as for a tenant that never wrote
    let dir = scratch("remote-read-mimir-wrong-tenant");
    let out = mimir_remote_read(&dir, range, Some("no-such-tenant"));
    assert!(out.status.success(), "{}", describe(&out));
    let written = files(&dir);
    assert!(!written.is_empty());
    assert_eq!(
        clusters_of(&dir),
        ["home"],
        "no cluster's series: {written:?}"
    );
    for f in &written {
        let v = read_json(&dir.join(f));
        assert_eq!(v["data"]["result"], serde_json::json!([]), "{f}");
    }
    // no tenant: Mimir refuses (401 "no org id"), a configuration error before any work
    let dir = scratch("remote-read-mimir-no-tenant");
    let out = mimir_remote_read(&dir, range, None);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no org id") && err.contains("PROMETHEUS_X_SCOPE_ORGID"),
        "{err}"
    );
    assert!(files(&dir).is_empty());
}
