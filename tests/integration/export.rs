//! `export` over the real stack: the gRPC source and the HTTP source (the oracle) write the
//! same files for every default catalog metric, every window of the data, both clusters.

use std::collections::BTreeMap;

use crate::support::exporter::{describe, exporter, files, log_event, read_json, scratch};
use crate::support::stack::stack;

fn export(source: &str, dir: &std::path::Path) -> std::process::Output {
    let s = stack();
    let from = s.data_from.to_string();
    let to = s.data_to.to_string();
    let mut args = vec!["export", "--from", &from, "--to", &to, "--source", source];
    let dir = dir.to_str().unwrap();
    args.extend(["--output-dir", dir]);
    exporter(
        &args,
        &[
            ("STORE_ENDPOINT", &s.thanos_grpc),
            ("PROMETHEUS_URL", &s.thanos_http),
            ("S3_PREFIX", "k8s/prometheus"),
            ("CLUSTER_NAME", "home"),
        ],
    )
}

type Points = Vec<(f64, f64)>;

fn series_of(v: &serde_json::Value) -> BTreeMap<String, Points> {
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "matrix");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let v = p[1].as_str().unwrap();
                    (p[0].as_f64().unwrap(), v.parse::<f64>().unwrap_or(f64::NAN))
                })
                .collect();
            (s["metric"].to_string(), points)
        })
        .collect()
}

#[test]
fn grpc_and_http_sources_write_the_same_files() {
    let s = stack();
    let g = scratch("parity-grpc");
    let h = scratch("parity-http");
    let out = export("grpc", &g);
    assert!(out.status.success(), "grpc export: {}", describe(&out));
    let grpc_calls = log_event(&out, "export finished").expect("a summary event")["calls"]
        .as_u64()
        .unwrap();
    let out = export("http", &h);
    assert!(out.status.success(), "http export: {}", describe(&out));

    let gf = files(&g);
    let hf = files(&h);
    assert_eq!(gf, hf, "the same object keys");
    let windows = ((s.data_to - s.data_from) / 3600) as usize;
    assert_eq!(
        gf.len(),
        windows * 19 * 2,
        "19 metrics x 2 clusters x every window"
    );

    let mut identical = 0;
    let mut points = 0usize;
    for f in &gf {
        let (a, b) = (
            std::fs::read(g.join(f)).unwrap(),
            std::fs::read(h.join(f)).unwrap(),
        );
        if a == b {
            identical += 1;
        }
        let (ga, ha) = (
            series_of(&read_json(&g.join(f))),
            series_of(&read_json(&h.join(f))),
        );
        assert_eq!(
            ga.keys().collect::<Vec<_>>(),
            ha.keys().collect::<Vec<_>>(),
            "{f}: the same series"
        );
        for (k, gp) in &ga {
            let hp = &ha[k];
            assert_eq!(gp.len(), hp.len(), "{f} {k}: the same number of points");
            for (x, y) in gp.iter().zip(hp) {
                assert_eq!(x.0, y.0, "{f} {k}: the same timestamps");
                let rel = (x.1 - y.1).abs() / y.1.abs().max(f64::MIN_POSITIVE);
                assert!(
                    rel <= 1e-9 || (x.1.is_nan() && y.1.is_nan()) || x.1 == y.1,
                    "{f} {k} at {}: grpc {} http {}",
                    x.0,
                    x.1,
                    y.1
                );
                points += 1;
            }
        }
    }
    eprintln!(
        "parity: {} files, {points} points, {identical} files byte-identical",
        gf.len()
    );
    // Same series order, same Kahan summation order, same deduplication: not one bit apart.
    assert_eq!(
        identical,
        gf.len(),
        "every file byte-identical to the HTTP path's"
    );
    // The data has series: not a comparison of empty files.
    assert!(points > 100_000, "{points} points compared");
    // The first window asks each of the 16 metric groups per cluster (a, b and the default
    // folder) after one LabelValues call; later windows pack what fits the request budget:
    // the data is small, so each window takes a handful of requests, not 49.
    eprintln!("grpc: {grpc_calls} calls for {windows} windows");
    assert!(
        grpc_calls >= 49 && grpc_calls <= 49 + (windows as u64 - 1) * 8,
        "{grpc_calls} calls for {windows} windows"
    );
}

#[test]
fn windows_land_in_their_billing_period_across_month_ends() {
    // 2025-10-31T23:00Z belongs to October's period, the next window to November's.
    let s = stack();
    let dir = scratch("month-boundary");
    let out = exporter(
        &[
            "export",
            "--from",
            "2025-10-31T23:00:00Z",
            "--to",
            "2025-11-01T01:00:00Z",
            "--output-dir",
            dir.to_str().unwrap(),
        ],
        &[
            ("STORE_ENDPOINT", &s.thanos_grpc),
            ("S3_PREFIX", "k8s/prometheus"),
            ("CLUSTER_NAME", "home"),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let f = files(&dir);
    assert!(f.contains(
        &"k8s/prometheus/b/end=20251101/day=31/metric=cpu_requests/1761951600_cpu_requests.json.gz"
            .to_string()
    ));
    assert!(f.contains(
        &"k8s/prometheus/b/end=20251201/day=1/metric=cpu_requests/1761955200_cpu_requests.json.gz"
            .to_string()
    ));
    assert_eq!(f.len(), 2 * 19 * 2);
}
