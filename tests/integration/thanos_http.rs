//! The stack as Thanos Query's HTTP API shows it: both clusters, HA deduplication, and the
//! generated data equal to the generator's ground truth.

use std::collections::BTreeSet;

use crate::support::stack::{instant_query, stack, truth, value};

#[tokio::test]
async fn both_clusters_are_visible() {
    let s = stack();
    let r = instant_query(
        "count by (cluster) (kube_node_info)",
        s.data_to - 3600,
        true,
    )
    .await;
    let clusters: BTreeSet<String> = r
        .iter()
        .map(|x| x["metric"]["cluster"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(clusters, BTreeSet::from(["a".to_string(), "b".to_string()]));
}

#[tokio::test]
async fn ha_pair_is_deduplicated() {
    let t = stack().data_to - 3600;
    let raw = instant_query(r#"kube_node_info{cluster="a"}"#, t, false).await;
    let dedup = instant_query(r#"kube_node_info{cluster="a"}"#, t, true).await;
    let nodes = dedup.len();
    assert!(nodes >= 2, "cluster a has nodes: {dedup:?}");
    assert_eq!(raw.len(), 2 * nodes, "every node once per replica");
    let replicas: BTreeSet<&str> = raw
        .iter()
        .map(|x| x["metric"]["replica"].as_str().unwrap())
        .collect();
    assert_eq!(replicas, BTreeSet::from(["a-0", "a-1"]));
    assert!(dedup.iter().all(|x| x["metric"].get("replica").is_none()));
    // cluster b is a single Prometheus: nothing to deduplicate
    let b_raw = instant_query(r#"kube_node_info{cluster="b"}"#, t, false).await;
    let b = instant_query(r#"kube_node_info{cluster="b"}"#, t, true).await;
    assert_eq!(b_raw.len(), b.len());
}

#[tokio::test]
async fn replicas_scrape_apart_and_one_misses_a_stretch() {
    // The replicas' samples of one series are a few seconds apart, as real replicas' are.
    let s = stack();
    let t = s.data_from + 2 * 3600;
    let r = instant_query(r#"timestamp(kube_node_info{cluster="a"})"#, t, false).await;
    let node = r[0]["metric"]["node"].as_str().unwrap().to_string();
    let ts: Vec<f64> = r
        .iter()
        .filter(|x| x["metric"]["node"] == node.as_str())
        .map(|x| value(&x["value"][1]))
        .collect();
    assert_eq!(ts.len(), 2);
    let apart = (ts[0] - ts[1]).abs();
    assert!((2.0..5.0).contains(&apart), "replicas are {apart}s apart");

    // Replica a-0 restarts in hour 5: it has fewer samples there; the deduplicated series fills
    // the gap from a-1. Thanos' penalty deduplication loses a sample or two at each switch of
    // replica (after a gap it waits before taking the other replica's samples): measured 118
    // of a-1's 120.
    let hour_end = s.data_from + 6 * 3600;
    let q = format!(r#"count_over_time(kube_node_info{{cluster="a", node="{node}"}}[1h])"#);
    let raw = instant_query(&q, hour_end, false).await;
    let per_replica = |rep: &str| {
        raw.iter()
            .find(|x| x["metric"]["replica"] == rep)
            .map(|x| value(&x["value"][1]))
            .unwrap()
    };
    let (a0, a1) = (per_replica("a-0"), per_replica("a-1"));
    assert!(a0 < a1 - 20.0, "a-0 misses 15 minutes: a-0 {a0}, a-1 {a1}");
    let dedup = instant_query(&q, hour_end, true).await;
    let merged = value(&dedup[0]["value"][1]);
    assert!(
        merged > a0 + 20.0,
        "deduplication fills a-0's gap: {merged} vs a-0 {a0}"
    );
    assert!(
        merged >= a1 - 4.0,
        "at most a few samples lost at switches: {merged} vs {a1}"
    );
}

/// Runs every ground-truth check named `name`; returns the largest relative difference.
async fn check_truth(name: &str) -> f64 {
    let truth = truth();
    let checks: Vec<&serde_json::Value> = truth["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .collect();
    assert!(
        checks.len() >= 48,
        "{name}: at least a day of hourly checks"
    );
    let mut worst = 0.0f64;
    for c in checks {
        let q = c["query"].as_str().unwrap();
        let t = c["time"].as_i64().unwrap();
        let want = c["value"].as_f64().unwrap();
        let r = instant_query(q, t, true).await;
        assert_eq!(r.len(), 1, "{q} at {t}: {r:?}");
        let got = value(&r[0]["value"][1]);
        let rel = (got - want).abs() / want.abs();
        assert!(rel <= 1e-12, "{q} at {t}: got {got}, ground truth {want}");
        worst = worst.max(rel);
    }
    worst
}

#[tokio::test]
async fn gauge_sum_equals_ground_truth() {
    // The truth is math.fsum of the requests (correctly rounded); Prometheus adds in its own
    // order, so the two may differ in the last ulp, never more.
    let worst = check_truth("cpu_requests_sum").await;
    assert!(
        worst <= 4.0 * f64::EPSILON,
        "worst relative difference {worst}"
    );
}

#[tokio::test]
async fn counter_rate_equals_ground_truth() {
    // The generator's counters grow at a known rate per hour, so rate() over a window inside
    // the hour equals it exactly in real numbers. In floats, the counter values (thousands)
    // carry increments of about one, so the difference of two samples keeps ~13 significant
    // digits: relative differences around 1e-14, well inside the 1e-12 asserted per check.
    let worst = check_truth("team_a_cpu_usage_rate").await;
    eprintln!("rate: worst relative difference from the ground truth {worst:e}");
}
