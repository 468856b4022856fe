//! Finout telemetry CSV files on the stack's two days (2025-10-31 and 2025-11-01, across the
//! month end): every row equals Thanos Query's instant query at the day's end, over gRPC and
//! over HTTP; a killed `run` resumes without skipping or repeating a day; a rerun writes the
//! same bytes; retention removes only expired day files of the catalog's names.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::bucket::{clear, client, objects, put};
use crate::support::exporter::{
    as_strs, describe, export_args, exporter_command, files, log_event, run, scratch, with,
};
use crate::support::s3_proxy::{self, Fault};
use crate::support::stack::{instant_query, stack, value};

const DAY: i64 = 86_400;
const SETTLE: i64 = 600;

/// The README's three examples, and network bytes with two metadata columns.
const ENTRIES: [(&str, &str); 4] = [
    (
        "network_bytes",
        "sum by (namespace) (increase(container_network_receive_bytes_total[1d]))",
    ),
    (
        "network_bytes_by_cluster",
        "sum by ({{cluster_label}}, namespace) (increase(container_network_receive_bytes_total[1d]))",
    ),
    (
        "cpu_core_hours",
        r#"sum by (namespace) (increase(container_cpu_usage_seconds_total{container!="", container!="POD"}[1d])) / 3600"#,
    ),
    (
        "pods",
        "count by ({{cluster_label}}) (max by ({{cluster_label}}, namespace, pod) (max_over_time(kube_pod_info[1d])))",
    ),
];

/// A catalog file with the telemetry entries and one cheap metric (the windows are not what
/// these tests are about).
fn catalog(dir: &std::path::Path) -> String {
    let mut text = String::from(
        "replace: true\nmetrics:\n  nodes: 'max by ({{cluster_label}}) (kube_node_info)'\ntelemetry:\n",
    );
    for (name, expr) in ENTRIES {
        text.push_str(&format!("  {name}: '{expr}'\n"));
    }
    let path = dir.join("catalog.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The settings of every run here: one-day windows, so the metric costs two windows.
fn base_env(catalog: &str) -> Vec<(String, String)> {
    let s = stack();
    [
        ("STORE_ENDPOINT", s.thanos_grpc.as_str()),
        ("PROMETHEUS_URL", s.thanos_http.as_str()),
        ("S3_PREFIX", "k8s/prometheus"),
        ("CLUSTER_NAME", "home"),
        ("TELEMETRY_PREFIX", "finout-telemetry"),
        ("CATALOG_FILE", catalog),
        ("TIME_FRAME", "86400"),
        ("QUERY_STEP", "3600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An RFC 4180 line of quoted fields (this exporter's CSV quotes every field).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        assert_eq!(c, '"', "every field is quoted: {line}");
        let mut f = String::new();
        loop {
            match chars.next().expect("a closing quote") {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    f.push('"');
                }
                '"' => break,
                c => f.push(c),
            }
        }
        out.push(f);
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(c) => panic!("{c:?} after a field: {line}"),
        }
    }
    out
}

/// Compares one CSV file with Thanos Query's instant query at the day's end; returns the rows
/// compared and the largest relative difference.
async fn compare_with_thanos(name: &str, expr: &str, day: i64, csv: &str) -> (usize, f64) {
    let date = jiff::Timestamp::from_second(day)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    assert!(csv.ends_with('\n') && !csv.contains('\r'), "{name} {date}");
    let mut lines = csv.lines();
    let header = fields(lines.next().expect("a header"));
    assert_eq!(header.first().map(String::as_str), Some("date"));
    assert_eq!(header.last().map(String::as_str), Some(name));
    let columns = &header[1..header.len() - 1];
    assert!(
        columns.windows(2).all(|w| w[0] < w[1]),
        "sorted: {header:?}"
    );
    let mut rows: Vec<(Vec<String>, f64)> = Vec::new();
    for line in lines {
        let f = fields(line);
        assert_eq!(f.len(), header.len(), "{line}");
        assert_eq!(f[0], date, "{line}");
        let v: f64 = f.last().unwrap().parse().unwrap();
        rows.push((f[1..f.len() - 1].to_vec(), v));
    }
    assert!(
        rows.windows(2).all(|w| w[0].0 < w[1].0),
        "rows sorted by metadata"
    );
    let query = expr.replace("{{cluster_label}}", "cluster");
    let thanos: BTreeMap<Vec<String>, f64> = instant_query(&query, day + DAY, true)
        .await
        .iter()
        .map(|s| {
            let meta = columns
                .iter()
                .map(|c| s["metric"][c].as_str().unwrap_or("").to_string())
                .collect();
            (meta, value(&s["value"][1]))
        })
        .filter(|(_, v)| v.is_finite() && *v > 0.0)
        .collect();
    assert!(!thanos.is_empty(), "{name} {date}: Thanos has data");
    let got: BTreeMap<Vec<String>, f64> = rows.into_iter().collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        thanos.keys().collect::<Vec<_>>(),
        "{name} {date}: the same metadata as Thanos"
    );
    let mut max_rel = 0f64;
    for (k, v) in &got {
        let t = thanos[k];
        let rel = (v - t).abs() / t.abs();
        assert!(rel <= 1e-9, "{name} {date} {k:?}: csv {v} thanos {t}");
        max_rel = max_rel.max(rel);
    }
    (got.len(), max_rel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_equals_thanos_query_at_the_day_end_over_grpc_and_http() {
    let s = stack();
    let dir = scratch("telemetry-parity");
    let cat = catalog(&dir);
    let mut bodies: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for source in ["grpc", "http"] {
        let out_dir = dir.join(source);
        let args = export_args(source, &out_dir, s.data_from, s.data_to);
        let out = run(&as_strs(&args, &[]), base_env(&cat)).await;
        assert!(out.status.success(), "{source}: {}", describe(&out));
        let summary = log_event(&out, "export finished").unwrap();
        assert_eq!(summary["telemetry_days"], 2, "{source}");
        assert_eq!(summary["telemetry_files"], 2 * ENTRIES.len(), "{source}");
        let root = out_dir.join("finout-telemetry");
        let f = files(&root);
        let mut expected: Vec<String> = ENTRIES
            .iter()
            .flat_map(|(n, _)| [format!("{n}/2025-10-31.csv"), format!("{n}/2025-11-01.csv")])
            .collect();
        expected.sort();
        assert_eq!(f, expected, "{source}: one file per telemetry and day");
        let (mut rows, mut max_rel) = (0, 0f64);
        for (name, expr) in ENTRIES {
            for day in [s.data_from, s.data_from + DAY] {
                let date = if day == s.data_from {
                    "2025-10-31"
                } else {
                    "2025-11-01"
                };
                let key = format!("{name}/{date}.csv");
                let body = std::fs::read(root.join(&key)).unwrap();
                let csv = String::from_utf8(body.clone()).expect("UTF-8");
                let (n, rel) = compare_with_thanos(name, expr, day, &csv).await;
                rows += n;
                max_rel = max_rel.max(rel);
                bodies
                    .entry(source.to_string())
                    .or_default()
                    .insert(key, body);
            }
        }
        eprintln!(
            "telemetry {source}: {} files, {rows} rows equal to Thanos Query, max relative difference {max_rel:e}",
            f.len()
        );
        assert!(rows >= 2 * (5 + 10 + 5 + 2), "{rows} rows compared");
    }
    let identical = bodies["grpc"]
        .iter()
        .filter(|(k, v)| bodies["http"].get(*k) == Some(*v))
        .count();
    eprintln!(
        "telemetry: {identical} of {} files byte-identical between gRPC and HTTP",
        bodies["grpc"].len()
    );
}

/// Each telemetry's progress in the state under `prefix`.
async fn progress(prefix: &str) -> BTreeMap<String, i64> {
    let Ok(got) = client()
        .get_object()
        .bucket(&stack().bucket)
        .key(format!("{prefix}/home/storeapi-exporter-state.json"))
        .send()
        .await
    else {
        return BTreeMap::new();
    };
    let bytes = got.body.collect().await.unwrap().into_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    serde_json::from_value(v["telemetry"].clone()).unwrap_or_default()
}

fn csv_files(objs: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    objs.iter()
        .filter(|(k, _)| k.ends_with(".csv"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_skipping_or_repeating_a_day() {
    let s = stack();
    let dir = scratch("telemetry-run");
    let cat = catalog(&dir);
    let (killed, reference) = ("it/tel-killed", "it/tel-whole");
    for p in [killed, reference] {
        clear(&format!("{p}/k8s")).await;
        clear(&format!("{p}/telemetry")).await;
    }
    let nov1 = s.data_from + DAY;
    let now = s.data_to + SETTLE;
    let env = |prefix: &str, s3: &str| {
        with(
            base_env(&cat),
            &[
                ("S3_ENDPOINT", s3),
                ("S3_BUCKET", &s.bucket),
                ("AWS_ACCESS_KEY_ID", &s.access_key),
                ("AWS_SECRET_ACCESS_KEY", &s.secret_key),
                ("AWS_REGION", "us-east-1"),
                ("S3_PREFIX", &format!("{prefix}/k8s")),
                ("TELEMETRY_PREFIX", &format!("{prefix}/telemetry")),
                ("EXPORTER_NOW", &now.to_string()),
                ("SETTLE_DELAY", &SETTLE.to_string()),
                ("BACKFILL_DAYS", "2"),
                ("RETENTION_DAYS", "0"),
            ],
        )
    };

    // the second day's uploads are held: the kill lands after day one is recorded and while
    // day two is being written
    let proxy = s3_proxy::start(&s.s3_endpoint, Fault::HoldUploads("/2025-11-01.csv")).await;
    let e = env(killed, &proxy.url);
    let vars: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = exporter_command(&[], &vars)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let held = ENTRIES.len() as u64;
    while proxy.injected.load(std::sync::atomic::Ordering::SeqCst) < held {
        assert!(Instant::now() < deadline, "day two's uploads never started");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), None, "killed by a signal");
    let p = progress(&format!("{killed}/k8s")).await;
    assert_eq!(p.len(), ENTRIES.len(), "{p:?}");
    assert!(p.values().all(|&u| u == nov1), "day one recorded: {p:?}");
    let at_kill = csv_files(&objects(&format!("{killed}/telemetry")).await);
    assert_eq!(
        at_kill.keys().cloned().collect::<Vec<_>>(),
        ENTRIES
            .iter()
            .map(|(n, _)| format!("{n}/2025-10-31.csv"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "day one whole, nothing of day two"
    );

    let out = run(&[], env(killed, &s.s3_endpoint)).await;
    assert!(out.status.success(), "resumed run: {}", describe(&out));
    let summary = log_event(&out, "run finished").unwrap();
    assert_eq!(summary["telemetry_days"], 1, "only day two: {summary}");
    assert_eq!(summary["telemetry_files"], ENTRIES.len());
    assert!(
        progress(&format!("{killed}/k8s"))
            .await
            .values()
            .all(|&u| u == s.data_to)
    );
    let resumed = csv_files(&objects(&format!("{killed}/telemetry")).await);

    let out = run(&[], env(reference, &s.s3_endpoint)).await;
    assert!(out.status.success(), "reference run: {}", describe(&out));
    let summary = log_event(&out, "run finished").unwrap();
    assert_eq!(summary["telemetry_days"], 2);
    let whole = csv_files(&objects(&format!("{reference}/telemetry")).await);
    assert_eq!(whole.len(), 2 * ENTRIES.len());
    assert_eq!(
        resumed.keys().collect::<Vec<_>>(),
        whole.keys().collect::<Vec<_>>(),
        "no day skipped, none repeated"
    );
    assert!(resumed == whole, "the same bytes as an uninterrupted run");
    for (k, body) in &at_kill {
        assert_eq!(&resumed[k], body, "{k}: day one not rewritten differently");
    }

    // nothing left to do; then a rerun of the range over the same keys: the same bytes
    let out = run(&[], env(killed, &s.s3_endpoint)).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        log_event(&out, "run finished").unwrap()["telemetry_days"],
        0
    );
    let out = run(
        &[
            "export",
            "--from",
            &s.data_from.to_string(),
            "--to",
            &s.data_to.to_string(),
        ],
        env(killed, &s.s3_endpoint),
    )
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        log_event(&out, "export finished").unwrap()["telemetry_files"],
        2 * ENTRIES.len()
    );
    let rerun = csv_files(&objects(&format!("{killed}/telemetry")).await);
    assert!(rerun == whole, "a rerun rewrites the same bytes");
    let obj = client()
        .head_object()
        .bucket(&s.bucket)
        .key(format!("{killed}/telemetry/pods/2025-10-31.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(obj.content_type(), Some("text/csv; charset=utf-8"));

    // retention: 25 h before now is 2025-10-31T23:10Z, so 2025-10-31 expires and
    // 2025-11-01 stays; what is not a day file of the catalog's names stays too
    let foreign = [
        format!("{killed}/telemetry/pods/notes.csv"),
        format!("{killed}/telemetry/retired_name/2025-10-31.csv"),
        format!("{killed}/telemetry/pods/2025-10-31.csv.bak"),
    ];
    for k in &foreign {
        put(k, b"not ours").await;
    }
    let out = run(
        &[],
        with(env(killed, &s.s3_endpoint), &[("RETENTION_DAYS", "25h")]),
    )
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let left = objects(&format!("{killed}/telemetry")).await;
    let mut expected: Vec<String> = ENTRIES
        .iter()
        .map(|(n, _)| format!("{n}/2025-11-01.csv"))
        .chain(foreign.iter().map(|k| k[killed.len() + 11..].to_string()))
        .collect();
    expected.sort();
    assert_eq!(left.keys().cloned().collect::<Vec<_>>(), expected);
}
