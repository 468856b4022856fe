//! The run metrics: every `run` pushes its outcome to the stack's Pushgateway, which a
//! Prometheus scrapes; read back here through PromQL, after a good run and after a failed one.

use std::time::{Duration, Instant};

use crate::support::exporter::{describe, run, scratch};
use crate::support::stack::{stack, topology};

/// The value of `query` in the Prometheus that scrapes the Pushgateway once it equals `want`
/// (`None`: the series exists); panics after a minute with the last answer.
async fn wait_for_value(query: &str, want: Option<f64>) -> f64 {
    let url = format!("{}/api/v1/query", topology().push_prometheus_url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = serde_json::Value::Null;
    loop {
        if let Ok(r) = reqwest::Client::new()
            .post(&url)
            .form(&[("query", query)])
            .send()
            .await
            && let Ok(v) = r.json::<serde_json::Value>().await
        {
            if let Some(x) = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok())
                && want.is_none_or(|w| w == x)
            {
                return x;
            }
            last = v;
        }
        assert!(
            Instant::now() < deadline,
            "{query} never gave {want:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_run_and_a_failed_one_are_read_back_through_prometheus() {
    let (s, t) = (stack(), topology());
    // a cluster folder of this test's own: the grouping key of its pushes
    let cluster = format!("metrics-{}", std::process::id());
    let dir = scratch("run-metrics");
    let now = s.data_from + 3 * 3600 + 600;
    let env = |store: &str| {
        vec![
            ("STORE_ENDPOINT".to_string(), store.to_string()),
            ("OUTPUT_DIR".into(), dir.display().to_string()),
            ("S3_PREFIX".into(), "metrics".into()),
            ("CLUSTER_NAME".into(), cluster.clone()),
            ("EXPORTER_NOW".into(), now.to_string()),
            ("BACKFILL_DAYS".into(), "3h".into()),
            ("RETENTION_DAYS".into(), "0".into()),
            ("PUSHGATEWAY_URL".into(), t.pushgateway_url.clone()),
            ("QUERY_IDLE_TIMEOUT".into(), "2s".into()),
            ("RETRIES".into(), "1".into()),
        ]
    };
    let began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = run(&[], env(&s.thanos_grpc)).await;
    assert!(out.status.success(), "{}", describe(&out));
    let at = |name: &str| {
        format!("{name}{{job=\"storeapi-exporter\", cluster=\"{cluster}\", shard=\"0-of-1\"}}")
    };
    wait_for_value(&at("storeapi_exporter_last_run_exit_code"), Some(0.0)).await;
    let success = wait_for_value(
        &at("storeapi_exporter_last_success_timestamp_seconds"),
        None,
    )
    .await;
    assert!(success >= began.floor(), "{success} >= {began}");
    assert_eq!(
        wait_for_value(
            &at("storeapi_exporter_exported_until_timestamp_seconds"),
            None
        )
        .await,
        (s.data_from + 3 * 3600) as f64
    );
    assert_eq!(
        wait_for_value(&at("storeapi_exporter_last_run_windows_exported"), None).await,
        3.0
    );
    assert_eq!(
        wait_for_value(&at("storeapi_exporter_missing_sources"), None).await,
        0.0
    );
    assert!(
        wait_for_value(&at("storeapi_exporter_last_run_files_written"), None).await >= 3.0 * 38.0
    );
    assert!(wait_for_value(&at("storeapi_exporter_last_run_calls"), None).await > 0.0);
    assert!(wait_for_value(&at("storeapi_exporter_last_run_peak_rss_bytes"), None).await > 1e6);

    // the StoreAPI unreachable: exit 3, pushed; the last success stays what it was
    let out = run(&[], env("http://127.0.0.1:1")).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    wait_for_value(&at("storeapi_exporter_last_run_exit_code"), Some(3.0)).await;
    assert_eq!(
        wait_for_value(
            &at("storeapi_exporter_last_success_timestamp_seconds"),
            None
        )
        .await,
        success
    );
    // an alert rule's expression: no success for an hour is false, the last run failed is true
    let stale = format!(
        "time() - {} > 3600",
        at("storeapi_exporter_last_success_timestamp_seconds")
    );
    let url = format!("{}/api/v1/query", t.push_prometheus_url);
    let v: serde_json::Value = reqwest::Client::new()
        .post(&url)
        .form(&[("query", stale.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");

    // a push to nowhere is a warning: the run still succeeds
    let mut e = env(&s.thanos_grpc);
    e.retain(|(k, _)| k != "PUSHGATEWAY_URL");
    e.push(("PUSHGATEWAY_URL".into(), "http://127.0.0.1:1".into()));
    let out = run(&[], e).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot push the run metrics"),
        "{}",
        describe(&out)
    );
}
