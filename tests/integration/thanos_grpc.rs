//! The Querier's StoreAPI on its gRPC port: a `Series` call answers with XOR chunks that real
//! Prometheus wrote, and our decoder reads them back to exactly the samples the Querier's HTTP
//! API shows.

use std::collections::BTreeMap;

use storeapi_exporter::chunk::XorIter;
use storeapi_exporter::store::proto::{SeriesRequest, chunk::Encoding, label_matcher::Type};
use storeapi_exporter::store::{StoreClient, StoreConfig, matcher};

use crate::support::stack::{stack, value};

type Labels = BTreeMap<String, String>;

async fn series(matchers: &[(&str, &str)]) -> Vec<(Labels, Vec<(i64, f64)>, usize)> {
    let s = stack();
    let client = StoreClient::connect(StoreConfig::new(s.thanos_grpc.clone()))
        .await
        .expect("connect to the Querier's StoreAPI");
    let req = SeriesRequest {
        min_time: s.data_from * 1000,
        max_time: s.data_to * 1000,
        matchers: matchers
            .iter()
            .map(|(n, v)| matcher(Type::Eq, n, v))
            .collect(),
        ..Default::default()
    };
    let mut stream = client.series(req).await.expect("Series call");
    let mut out = Vec::new();
    while let Some(series) = stream.next().await.expect("Series stream") {
        let labels: Labels = series.labels.iter().map(|l| l.lossy()).collect();
        let mut samples = Vec::new();
        for c in &series.chunks {
            let raw = c.raw.as_ref().expect("raw chunk");
            assert_eq!(
                raw.r#type,
                Encoding::Xor as i32,
                "float data comes as XOR chunks"
            );
            let mut it = XorIter::new(&raw.data).expect("chunk header");
            while let Some((t, v)) = it.next_sample().expect("chunk decodes") {
                assert!(
                    (c.min_time..=c.max_time).contains(&t),
                    "sample {t} outside its chunk's [{}, {}]",
                    c.min_time,
                    c.max_time
                );
                samples.push((t, v));
            }
        }
        // The store gateway and the sidecar both hold the backfilled range: the Querier sends
        // both stores' chunks of a series (cut differently, so not dropped as identical), and
        // their samples overlap. The same sample from two stores is the same bits.
        samples.sort_by_key(|s| s.0);
        samples.dedup_by(|b, a| {
            if a.0 != b.0 {
                return false;
            }
            assert_eq!(
                a.1.to_bits(),
                b.1.to_bits(),
                "two stores disagree at {}",
                a.0
            );
            true
        });
        out.push((labels, samples, series.chunks.len()));
    }
    out
}

#[tokio::test]
async fn series_answers_with_xor_chunks_equal_to_the_http_samples() {
    let s = stack();
    let got = series(&[
        ("__name__", "container_cpu_usage_seconds_total"),
        ("cluster", "b"),
        ("namespace", "team-a"),
    ])
    .await;
    assert!(!got.is_empty(), "series for team-a in cluster b");
    let mut names = Vec::new();
    for (labels, samples, chunks) in &got {
        assert_eq!(labels["cluster"], "b");
        assert_eq!(
            labels["replica"], "b",
            "the sidecar adds its external labels"
        );
        assert!(chunks > &1, "two days of samples span several chunks");
        assert!(
            samples.len() > 5000,
            "two days at 30s: {} samples",
            samples.len()
        );
        names.push(labels.clone());
    }
    // The same series over HTTP: raw samples of a range selector, rendered by the Querier.
    for labels in names.iter().take(3) {
        let sel: Vec<String> = labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let q = format!(
            "container_cpu_usage_seconds_total{{{}}}[{}s]",
            sel.join(","),
            s.data_to - s.data_from + 60
        );
        let r = crate::support::stack::instant_query(&q, s.data_to + 30, false).await;
        assert_eq!(r.len(), 1, "{q}");
        let http: Vec<(i64, f64)> = r[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    value(&p[1]),
                )
            })
            .collect();
        let grpc = &got.iter().find(|g| &g.0 == labels).unwrap().1;
        assert_eq!(grpc.len(), http.len(), "{q}: sample counts");
        for (a, b) in grpc.iter().zip(&http) {
            assert_eq!(a.0, b.0, "{q}: timestamps");
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "{q}: values at {}", a.0);
        }
    }
}

#[tokio::test]
async fn series_carries_both_replicas_of_the_ha_pair() {
    // The StoreAPI does not deduplicate: the exporter must, as the Querier's PromQL does.
    let got = series(&[("__name__", "kube_node_info"), ("cluster", "a")]).await;
    let replicas: std::collections::BTreeSet<&str> =
        got.iter().map(|g| g.0["replica"].as_str()).collect();
    assert_eq!(replicas, ["a-0", "a-1"].into_iter().collect());
}
