//! The exporter against a production-shaped Thanos (`STACK_TOPOLOGY=full`): the gRPC source
//! and the HTTP source (Thanos Query's PromQL, the oracle) write the same files for every
//! default catalog metric over object storage alone, object storage and sidecars over the
//! same range, a bucket compacted with offline deduplication, a receiver, live scrapes with
//! real staleness markers and replica offsets, and each store on its own (the Querier behind
//! TLS: `tls.rs`).
//!
//! The live tests (`live_*`) sort after the others, so with the default test threads they run
//! last; each waits until the live scrapes have covered its windows rather than sleeping.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use storeapi_exporter::store::proto::{SeriesRequest, label_matcher::Type};
use storeapi_exporter::store::{StoreClient, StoreConfig, matcher};

use crate::support::exporter::{
    as_strs, describe, export_args, exporter, files, read_json, scratch,
};
use crate::support::stack::{Topology, stack, topology};

pub(crate) const PREFIX: &str = "k8s/prometheus";
pub(crate) const METRICS: usize = 19;

/// `export` of `[from, to)` into `dir` from `store` (gRPC source) or `http` (HTTP source).
pub(crate) fn export(
    source: &str,
    dir: &Path,
    (from, to): (i64, i64),
    store: &str,
    http: &str,
    extra: &[&str],
) -> Output {
    let args = export_args(source, dir, from, to);
    exporter(
        &as_strs(&args, extra),
        &[
            ("STORE_ENDPOINT", store),
            ("PROMETHEUS_URL", http),
            ("S3_PREFIX", PREFIX),
            ("CLUSTER_NAME", "home"),
        ],
    )
}

/// What a comparison covered.
#[derive(Debug, Default)]
pub(crate) struct Parity {
    pub files: usize,
    pub series: usize,
    pub points: usize,
    pub identical: usize,
}

type Points = Vec<(f64, String)>;

pub(crate) fn series_of(f: &str, v: &serde_json::Value) -> BTreeMap<String, Points> {
    assert_eq!(v["status"], "success", "{f}");
    assert_eq!(v["data"]["resultType"], "matrix", "{f}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect();
            (s["metric"].to_string(), points)
        })
        .collect()
}

pub(crate) fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * y.abs().max(f64::MIN_POSITIVE),
        _ => false,
    }
}

/// Compares the files the gRPC source wrote under `g` with the HTTP source's under `h`,
/// restricted to the keys `keep` accepts: the same keys, series, timestamps, and values within
/// 1e-9 relative. Collects every difference before failing, and counts the gRPC points whose
/// value is "NaN" (a staleness marker exported as a value, the known defect) apart.
pub(crate) fn compare(g: &Path, h: &Path, keep: impl Fn(&str) -> bool) -> Parity {
    let gf: Vec<String> = files(g).into_iter().filter(|f| keep(f)).collect();
    let hf: Vec<String> = files(h).into_iter().filter(|f| keep(f)).collect();
    assert_eq!(gf, hf, "the same object keys");
    let mut p = Parity::default();
    let mut diffs = Vec::new();
    let (mut grpc_nan, mut http_nan) = (0usize, 0usize);
    for f in &gf {
        p.files += 1;
        if std::fs::read(g.join(f)).unwrap() == std::fs::read(h.join(f)).unwrap() {
            p.identical += 1;
        }
        let (gs, hs) = (
            series_of(f, &read_json(&g.join(f))),
            series_of(f, &read_json(&h.join(f))),
        );
        grpc_nan += gs.values().flatten().filter(|x| x.1 == "NaN").count();
        http_nan += hs.values().flatten().filter(|x| x.1 == "NaN").count();
        for k in gs.keys().filter(|k| !hs.contains_key(*k)) {
            diffs.push(format!("{f}: only grpc has {k}: {:?}", gs[k]));
        }
        for k in hs.keys().filter(|k| !gs.contains_key(*k)) {
            diffs.push(format!("{f}: only http has {k}: {:?}", hs[k]));
        }
        for (k, gp) in gs.iter().filter(|(k, _)| hs.contains_key(*k)) {
            let hp = &hs[k];
            p.series += 1;
            let same = gp.len() == hp.len()
                && gp
                    .iter()
                    .zip(hp)
                    .all(|(x, y)| x.0 == y.0 && same_value(&x.1, &y.1));
            if same {
                p.points += gp.len();
            } else {
                let first = gp
                    .iter()
                    .zip(hp)
                    .find(|(x, y)| !(x.0 == y.0 && same_value(&x.1, &y.1)));
                diffs.push(format!(
                    "{f} {k}: grpc {} points, http {}; first difference (grpc, http): {first:?}",
                    gp.len(),
                    hp.len()
                ));
            }
        }
    }
    eprintln!(
        "parity {}: {} files ({} byte-identical), {} series, {} points; {} differences",
        g.display(),
        p.files,
        p.identical,
        p.series,
        p.points,
        diffs.len()
    );
    assert!(
        diffs.is_empty(),
        "{} differences between grpc and http ({grpc_nan} \"NaN\" points from grpc, {http_nan} \
         from http; a series that ended must have no point, never a \"NaN\"); the first:\n{}",
        diffs.len(),
        diffs.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
    p
}

/// Exports `range` over gRPC from `store` and over HTTP from `http`, and compares the files of
/// the clusters `keep` accepts (by key).
fn parity(
    name: &str,
    range: (i64, i64),
    store: &str,
    http: &str,
    extra: &[&str],
    keep: impl Fn(&str) -> bool,
) -> Parity {
    let g = scratch(&format!("{name}-grpc"));
    let h = scratch(&format!("{name}-http"));
    let out = export("grpc", &g, range, store, http, extra);
    assert!(out.status.success(), "grpc export: {}", describe(&out));
    let out = export("http", &h, range, store, http, extra);
    assert!(out.status.success(), "http export: {}", describe(&out));
    compare(&g, &h, keep)
}

pub(crate) fn in_cluster(cluster: &str) -> impl Fn(&str) -> bool + '_ {
    move |f: &str| f.starts_with(&format!("{PREFIX}/{cluster}/"))
}

pub(crate) fn clusters_of(dir: &Path) -> Vec<String> {
    let mut c: Vec<String> = files(dir)
        .iter()
        .filter_map(|f| f.strip_prefix(&format!("{PREFIX}/")))
        .filter_map(|f| f.split('/').next())
        .map(str::to_string)
        .collect();
    c.dedup();
    c
}

#[test]
fn bucket_only_day_grpc_equals_http() {
    // (a) the day before the sidecars' data: only the store gateway has it (uploaded blocks
    // of the HA pair and of cluster b, with the replicas' gap and the duplicated
    // kube-state-metrics hours).
    let (s, t) = (stack(), topology());
    let range = (t.store_only_from + 3 * 3600, t.store_only_from + 11 * 3600);
    let p = parity(
        "topology-bucket-only",
        range,
        &s.thanos_grpc,
        &s.thanos_http,
        &[],
        |_| true,
    );
    assert_eq!(
        p.files,
        8 * METRICS * 2,
        "8 windows x 19 metrics x 2 clusters"
    );
    assert!(p.points > 30_000, "{p:?}");
}

/// Whether some series of `name` in `cluster` arrives from `store` with chunks that overlap
/// (one series from two stores, cut differently) over `[from, to]`.
async fn overlapping_chunks(store: &str, cluster: &str, name: &str, from: i64, to: i64) -> usize {
    let client = StoreClient::connect(StoreConfig::new(store.to_string()))
        .await
        .expect("connect to the StoreAPI");
    let req = SeriesRequest {
        min_time: from * 1000,
        max_time: to * 1000,
        matchers: vec![
            matcher(Type::Eq, "__name__", name),
            matcher(Type::Eq, "cluster", cluster),
        ],
        ..Default::default()
    };
    let mut stream = client.series(req).await.expect("Series call");
    let mut overlapping = 0;
    while let Some(series) = stream.next().await.expect("Series stream") {
        let mut spans: Vec<(i64, i64)> = series
            .chunks
            .iter()
            .map(|c| (c.min_time, c.max_time))
            .collect();
        spans.sort();
        if spans.windows(2).any(|w| w[1].0 <= w[0].1) {
            overlapping += 1;
        }
    }
    overlapping
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_and_sidecars_grpc_equals_http() {
    // (b) the store gateway and the sidecars over the same range, and the switch from the
    // store gateway alone to both at the start of the sidecars' data.
    let (s, t) = (stack(), topology());
    let overlap = overlapping_chunks(
        &s.thanos_grpc,
        "b",
        "kube_node_info",
        s.data_from + 3600,
        s.data_from + 3 * 3600,
    )
    .await;
    assert!(
        overlap > 0,
        "the Querier merges one series from the store gateway and a sidecar with overlapping chunks"
    );
    assert_eq!(
        overlapping_chunks(
            &t.store_grpc,
            "b",
            "kube_node_info",
            t.store_only_from,
            t.store_only_to
        )
        .await,
        0,
        "one store alone never overlaps"
    );
    let range = (s.data_from - 2 * 3600, s.data_from + 6 * 3600);
    let p = tokio::task::spawn_blocking(move || {
        parity(
            "topology-bucket-sidecars",
            range,
            &stack().thanos_grpc,
            &stack().thanos_http,
            &[],
            |_| true,
        )
    })
    .await
    .unwrap();
    assert_eq!(
        p.files,
        8 * METRICS * 2,
        "8 windows x 19 metrics x 2 clusters"
    );
    assert!(p.points > 30_000, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_bucket_grpc_equals_http() {
    // (c) `thanos compact` with offline deduplication of `replica`: one series per cluster
    // a object, no replica label, merged across the HA pair's gap in hour 5.
    let t = topology();
    let s = stack();
    let client = StoreClient::connect(StoreConfig::new(t.compact_grpc.clone()))
        .await
        .expect("connect to the compacted Querier");
    let req = SeriesRequest {
        min_time: (s.data_from + 3600) * 1000,
        max_time: (s.data_from + 7200) * 1000,
        matchers: vec![
            matcher(Type::Eq, "__name__", "kube_node_info"),
            matcher(Type::Eq, "cluster", "a"),
        ],
        ..Default::default()
    };
    let mut stream = client.series(req).await.expect("Series call");
    let mut n = 0;
    while let Some(series) = stream.next().await.expect("Series stream") {
        assert!(
            series.labels.iter().all(|l| l.name != "replica"),
            "offline deduplication removed the replica label: {:?}",
            series.labels
        );
        n += 1;
    }
    assert!(n >= 2, "cluster a's nodes, once each: {n}");

    let range = (s.data_from - 3600, s.data_from + 7 * 3600);
    let (grpc, http) = (t.compact_grpc.clone(), t.compact_http.clone());
    let p = tokio::task::spawn_blocking(move || {
        parity("topology-compacted", range, &grpc, &http, &[], |_| true)
    })
    .await
    .unwrap();
    assert_eq!(
        p.files,
        8 * METRICS * 2,
        "8 windows x 19 metrics x 2 clusters"
    );
    assert!(p.points > 30_000, "{p:?}");
}

#[test]
fn direct_stores_grpc_equal_the_queriers_http() {
    // (f) --store pointed straight at a sidecar and at the store gateway (the receiver: see
    // live_direct_receiver_equals_the_queriers_http): the files of what that store holds equal
    // the main Querier's PromQL.
    let (s, t) = (stack(), topology());
    let sidecar_b = &t
        .sidecars
        .iter()
        .find(|(inst, _)| inst == "b")
        .expect("a sidecar for cluster b")
        .1;
    let range = (s.data_from + 3 * 3600, s.data_from + 5 * 3600);
    let g = scratch("topology-direct-sidecar-grpc");
    let h = scratch("topology-direct-http");
    let out = export("grpc", &g, range, sidecar_b, &s.thanos_http, &[]);
    assert!(
        out.status.success(),
        "grpc from the sidecar: {}",
        describe(&out)
    );
    assert_eq!(clusters_of(&g), ["b"], "a sidecar serves its own cluster");
    let out = export("http", &h, range, sidecar_b, &s.thanos_http, &[]);
    assert!(out.status.success(), "http export: {}", describe(&out));
    let p = compare(&g, &h, in_cluster("b"));
    assert_eq!(p.files, 2 * METRICS, "{p:?}");

    // The store gateway alone, over the day only it has and over a range the sidecars also
    // have.
    for (name, range) in [
        ("store-only", (t.store_only_to - 2 * 3600, t.store_only_to)),
        (
            "store-shared",
            (s.data_from + 3 * 3600, s.data_from + 5 * 3600),
        ),
    ] {
        let p = parity(
            &format!("topology-direct-{name}"),
            range,
            &t.store_grpc,
            &s.thanos_http,
            &[],
            |_| true,
        );
        assert_eq!(
            p.files,
            4 * METRICS,
            "{name}: 2 windows x 2 clusters: {p:?}"
        );
    }
}

// ---- live data --------------------------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Minute windows of live data for `--time-frame 60`: at least `min` and at most 5 of them,
/// starting at least 30 s after the live scrapes did (so the first has data in its lookback)
/// and ending `settle` seconds before now (scrapes, remote writes and head appends are done).
/// Waits until the scrapes have covered them.
pub(crate) fn live_windows(t: &Topology, min: i64, settle: i64) -> (i64, i64) {
    let first = (t.live_from + 30 + 59).div_euclid(60) * 60;
    let ready = first + min * 60 + settle;
    if now() < ready {
        eprintln!(
            "waiting {}s for {min} minutes of live data (live since {})",
            ready - now(),
            t.live_from
        );
        std::thread::sleep(Duration::from_secs((ready - now()).max(0) as u64));
    }
    let to = (now() - settle).div_euclid(60) * 60;
    (first.max(to - 5 * 60), to)
}

pub(crate) const LIVE_ARGS: &[&str] = &["--time-frame", "60", "--step", "5"];

#[test]
fn live_ha_pair_and_single_prometheus_grpc_equal_http() {
    // (e) minute windows at step 5 over live scrapes: head chunks through the sidecars, real
    // staleness markers of ended pods, counter resets of restarted containers, pods moving
    // between nodes, and the HA pair's replicas scraping apart.
    let (s, t) = (stack(), topology());
    let range = live_windows(t, 2, 20);
    let p = parity(
        "topology-live",
        range,
        &s.thanos_grpc,
        &s.thanos_http,
        LIVE_ARGS,
        |_| true,
    );
    let windows = ((range.1 - range.0) / 60) as usize;
    assert_eq!(
        p.files,
        windows * METRICS * 4,
        "19 metrics x clusters a, b, c and the Collector's: {p:?}"
    );
    assert!(p.points > windows * 4000, "{p:?}");
}

#[test]
fn live_ha_pair_scrapes_apart() {
    // Prometheus offsets each target's scrapes by a hash of the target's URL and of its own
    // external labels: the replicas' samples of one series never share a timestamp. How far
    // apart they are depends on that hash, so on STACK_BASE_PORT (0.66 s at the default
    // 19000, 0.01 s measured at 21000): only "apart" is asserted.
    let t = topology();
    let (_, at) = live_windows(t, 1, 10);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(crate::support::stack::instant_query(
        r#"timestamp(kube_node_info{cluster="a"})"#,
        at,
        false,
    ));
    let node = r[0]["metric"]["node"].as_str().unwrap().to_string();
    let ts: Vec<f64> = r
        .iter()
        .filter(|x| x["metric"]["node"] == node.as_str())
        .map(|x| crate::support::stack::value(&x["value"][1]))
        .collect();
    assert_eq!(ts.len(), 2, "one sample per replica: {r:?}");
    let interval = t.live_interval as f64;
    // two timestamps of the same scrape period, or of consecutive ones
    let apart = ((ts[0] - ts[1]).abs() % interval).min(interval - (ts[0] - ts[1]).abs() % interval);
    eprintln!("replicas scrape {apart:.3}s apart (interval {interval}s)");
    assert!(apart >= 0.001, "replicas scrape apart: {ts:?}");
}

#[test]
fn live_receiver_tenant_grpc_equals_http() {
    // (d) cluster c: a Prometheus that only remote-writes to the receiver (tenant header),
    // served by the receiver's head, deduplicated over receive_replica.
    let (s, t) = (stack(), topology());
    let range = live_windows(t, 2, 20);
    let cluster = t.receive_cluster.as_str();
    let p = parity(
        "topology-live-receiver",
        range,
        &s.thanos_grpc,
        &s.thanos_http,
        LIVE_ARGS,
        in_cluster(cluster),
    );
    let windows = ((range.1 - range.0) / 60) as usize;
    assert_eq!(p.files, windows * METRICS, "{p:?}");
    // The tenant is an external label of the receiver: it is on the exported series.
    let g = Path::new(env!("CARGO_TARGET_TMPDIR")).join("topology-live-receiver-grpc");
    let info = files(&g)
        .into_iter()
        .find(|f| {
            f.starts_with(&format!("{PREFIX}/{cluster}/")) && f.ends_with("_pod_info.json.gz")
        })
        .expect("a pod_info file of the receiver's cluster");
    let v = read_json(&g.join(info));
    assert_eq!(
        v["data"]["result"][0]["metric"]["tenant_id"], t.receive_tenant,
        "{v}"
    );
    assert!(
        v["data"]["result"][0]["metric"]
            .get("receive_replica")
            .is_none(),
        "the replica label is deduplicated: {v}"
    );
}

#[test]
fn live_direct_sidecar_and_receiver_equal_the_queriers_http() {
    // (f) live windows with --store straight at the receiver (clusters c and the Collector's) and
    // at cluster b's sidecar (remote read of the Prometheus head).
    let (s, t) = (stack(), topology());
    let range = live_windows(t, 2, 20);
    let sidecar_b = t
        .sidecars
        .iter()
        .find(|(inst, _)| inst == "b")
        .expect("a sidecar for cluster b")
        .1
        .clone();
    let h = scratch("topology-live-direct-http");
    let out = export("http", &h, range, &s.thanos_grpc, &s.thanos_http, LIVE_ARGS);
    assert!(out.status.success(), "http export: {}", describe(&out));
    // the receiver holds two clusters: the Prometheus' and the Collector's
    let receiver = vec![t.receive_cluster.clone(), t.otel_cluster.clone()];
    for (name, store, clusters) in [
        ("receiver", t.receive_grpc.clone(), receiver),
        ("sidecar", sidecar_b, vec!["b".to_string()]),
    ] {
        let g = scratch(&format!("topology-live-direct-{name}"));
        let out = export("grpc", &g, range, &store, &s.thanos_http, LIVE_ARGS);
        assert!(
            out.status.success(),
            "grpc from the {name}: {}",
            describe(&out)
        );
        assert_eq!(clusters_of(&g), clusters, "{name}: its own clusters only");
        for cluster in &clusters {
            let p = compare(&g, &h, in_cluster(cluster));
            assert!(p.points > 1000, "{name}, cluster {cluster}: {p:?}");
        }
    }
}
