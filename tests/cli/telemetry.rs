//! Telemetry entries the exporter cannot export are refused at start-up, before any
//! connection (the StoreAPI here does not even exist), with exit code 2 and a message naming
//! the entry and the fix; nothing is written.

use crate::support::exporter::{describe, exporter, files, scratch};

/// `export` of one day with a catalog file holding `telemetry`, against no StoreAPI at all.
fn export_with(name: &str, telemetry: &str, extra: &[&str]) -> (std::process::Output, Vec<String>) {
    let dir = scratch(name);
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, format!("telemetry:\n{telemetry}")).unwrap();
    let out_dir = dir.join("out");
    let mut args = vec![
        "export",
        "--from",
        "2025-10-31T00:00:00Z",
        "--to",
        "2025-11-01T00:00:00Z",
        "--store",
        "http://127.0.0.1:1",
        "--s3-prefix",
        "k8s/prometheus",
        "--cluster-name",
        "home",
        "--output-dir",
        out_dir.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = exporter(&args, &[]);
    (out, files(&out_dir))
}

fn refused(out: &std::process::Output, written: &[String], needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{n:?} in: {err}");
    }
    assert!(written.is_empty(), "nothing written: {written:?}");
}

const PREFIX: [&str; 2] = ["--telemetry-prefix", "finout-telemetry"];

#[test]
fn an_entry_that_is_not_a_by_aggregation_is_refused() {
    let (out, written) = export_with(
        "telemetry-not-by",
        "  network_bytes: 'sum by (namespace) (increase(container_network_receive_bytes_total[1d]))'\n  raw_rate: 'rate(container_network_receive_bytes_total[1d])'\n",
        &PREFIX,
    );
    refused(
        &out,
        &written,
        &[
            "catalog telemetry entry raw_rate",
            "outermost operation must be an aggregation with by (...)",
            "found rate()",
        ],
    );
    let (out, written) = export_with(
        "telemetry-without",
        "  per_pod: 'sum without (instance) (kube_pod_info)'\n",
        &PREFIX,
    );
    refused(
        &out,
        &written,
        &["catalog telemetry entry per_pod", "sum by (...)"],
    );
}

#[test]
fn an_entry_with_more_than_ten_labels_is_refused() {
    let (out, written) = export_with(
        "telemetry-eleven",
        "  wide: 'sum by (a, b, c, d, e, f, g, h, i, j, k) (kube_pod_info)'\n",
        &PREFIX,
    );
    refused(
        &out,
        &written,
        &[
            "catalog telemetry entry wide",
            "names 11 labels",
            "at most 10",
        ],
    );
}

#[test]
fn an_entry_outside_the_engine_subset_is_refused_for_grpc() {
    let (out, written) = export_with(
        "telemetry-subset",
        "  p90: 'max by (namespace) (quantile_over_time(0.9, container_memory_working_set_bytes[1d]))'\n",
        &PREFIX,
    );
    refused(
        &out,
        &written,
        &[
            "catalog telemetry entry p90",
            "quantile_over_time",
            "--source http",
        ],
    );
}

#[test]
fn telemetry_needs_a_prefix_of_its_own() {
    let entry = "  pods: 'count by (cluster) (kube_pod_info)'\n";
    let (out, written) = export_with("telemetry-no-prefix", entry, &[]);
    refused(&out, &written, &["TELEMETRY_PREFIX", "telemetry entries"]);
    let (out, written) = export_with(
        "telemetry-inside",
        entry,
        &["--telemetry-prefix", "k8s/prometheus/telemetry"],
    );
    refused(&out, &written, &["TELEMETRY_PREFIX", "prefix of their own"]);
}
