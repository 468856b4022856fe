//! Late data on real peers: clusters d and e, each a Prometheus scraping the live target and
//! remote-writing to a Thanos Receive of their own through a proxy, behind a Querier of their
//! own (`integration/stack/up.sh`). The test cuts d's link (Prometheus keeps the samples in its
//! WAL and replays them once it heals) and restarts e's Prometheus; no other test reads these
//! peers.
//!
//! What must hold, each against Thanos Query's PromQL over the same windows once the data has
//! arrived: a `run` during the cut writes no window d has not reached (exit 0, d named), and
//! the held windows come out equal after the heal; with a grace shorter than the cut the
//! windows go out without d and are written again, equal, once its data arrives; without the
//! check (WATERMARK_METRIC empty) the windows of the cut are wrong, which is what the check is
//! for. A restart of e's Prometheus is waited for the same way.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::exporter::{
    as_strs, describe, export_args, exporter, files, read_json, run, scratch, state_of, window_of,
    windows_of,
};
use crate::support::stack::{Topology, topology};
use crate::topology::{PREFIX, compare};

const TF: i64 = 60;
/// Windows ending this long ago are due (the tests' SETTLE_DELAY).
const SETTLE: i64 = 20;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join(PREFIX).join("home/storeapi-exporter-state.json")
}

/// A state saying every window before `from` is exported: the runs start there.
fn seed_state(dir: &Path, from: i64) {
    let path = state_file(dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let state = serde_json::json!({"version": 1, "exported_until": from, "time_frame": TF});
    std::fs::write(path, state.to_string()).unwrap();
}

fn state(dir: &Path) -> serde_json::Value {
    state_of(dir, PREFIX)
}

fn exported_until(dir: &Path) -> i64 {
    state(dir)["exported_until"].as_i64().unwrap()
}

/// `run` against the late-data Querier into `dir` with minute windows.
async fn run_late(t: &Topology, dir: &Path, extra: &[(&str, &str)]) -> Output {
    let mut env: Vec<(String, String)> = [
        ("STORE_ENDPOINT", t.late_grpc.as_str()),
        ("OUTPUT_DIR", dir.to_str().unwrap()),
        ("S3_PREFIX", PREFIX),
        ("CLUSTER_NAME", "home"),
        ("TIME_FRAME", "60"),
        ("QUERY_STEP", "5"),
        ("SETTLE_DELAY", "20s"),
        ("RETENTION_DAYS", "0"),
        ("LATE_DATA_GRACE", "1h"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    for (k, v) in extra {
        env.retain(|(x, _)| x != k);
        env.push((k.to_string(), v.to_string()));
    }
    run(&[], env).await
}

/// The late Querier's PromQL over `[from, to)`: the oracle.
fn http_export(t: &Topology, name: &str, (from, to): (i64, i64)) -> PathBuf {
    let dir = scratch(name);
    let args = export_args("http", &dir, from, to);
    let out = exporter(
        &as_strs(&args, &["--time-frame", "60", "--step", "5"]),
        &[
            ("PROMETHEUS_URL", t.late_http.as_str()),
            ("STORE_ENDPOINT", t.late_grpc.as_str()),
            ("S3_PREFIX", PREFIX),
            ("CLUSTER_NAME", "home"),
        ],
    );
    assert!(out.status.success(), "http export: {}", describe(&out));
    dir
}

/// The newest sample of the cluster's watermark metric in the late Querier (seconds), if any
/// within the lookback.
async fn newest(t: &Topology, cluster: &str) -> Option<f64> {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/query", t.late_http))
        .form(&[
            (
                "query",
                format!("max(timestamp(kube_node_info{{cluster=\"{cluster}\"}}))"),
            ),
            ("time", now().to_string()),
        ])
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = resp.json().await.ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Waits until the cluster's newest sample is at most `within` seconds old.
async fn caught_up(t: &Topology, cluster: &str, within: f64, wait: Duration) {
    let began = std::time::Instant::now();
    loop {
        let n = newest(t, cluster).await;
        if n.is_some_and(|n| now() as f64 - n <= within) {
            eprintln!("cluster {cluster} caught up after {:?}", began.elapsed());
            return;
        }
        assert!(
            began.elapsed() < wait,
            "cluster {cluster}'s data did not arrive within {wait:?} (newest {n:?})"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn link(t: &Topology, cluster: &str, action: &str) {
    let k = t.late_clusters.iter().position(|c| c == cluster).unwrap() as u16;
    let base: reqwest::Url = t.late_proxy_url.parse().unwrap();
    let url = format!("http://127.0.0.1:{}/-/{action}", base.port().unwrap() + k);
    let r = reqwest::Client::new().post(&url).send().await.unwrap();
    assert!(r.status().is_success(), "POST {url}: {}", r.status());
    eprintln!("cluster {cluster}'s link: {action} at {}", now());
}

fn assert_exit_0_naming(out: &Output, what: &[&str]) {
    assert!(out.status.success(), "{}", describe(out));
    let err = String::from_utf8_lossy(&out.stderr);
    for w in what {
        assert!(err.contains(w), "the log says {w:?}: {err}");
    }
}

/// The files (not the state) of windows in `[from, to)`.
fn windows_in((from, to): (i64, i64)) -> impl Fn(&str) -> bool {
    move |f: &str| f.ends_with(".json.gz") && (from..to).contains(&window_of(f))
}

fn d_files_differing(g: &Path, h: &Path, cluster: &str, range: (i64, i64)) -> usize {
    files(g)
        .into_iter()
        .filter(|f| f.starts_with(&format!("{PREFIX}/{cluster}/")))
        .filter(|f| windows_in(range)(f))
        .filter(|f| {
            let theirs = h.join(f);
            !theirs.exists() || read_json(&g.join(f)) != read_json(&theirs)
        })
        .count()
}

/// Sleeps until the clock reads `t` (unix seconds).
async fn until(t: i64) {
    let wait = t - now();
    if wait > 0 {
        tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    }
}

/// The end of the window holding `t`: once the clock passes it plus SETTLE, it is due.
fn window_end(t: i64) -> i64 {
    (t.div_euclid(TF) + 1) * TF
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_late_data_is_waited_for_then_exported_equal_to_thanos_query() {
    let t = topology();
    let (d, e) = (t.late_clusters[0].as_str(), t.late_clusters[1].as_str());
    // two minutes of both clusters' data before anything happens
    let from = (t.live_from + 30 + TF - 1).div_euclid(TF) * TF;
    until(from + 2 * TF + SETTLE).await;
    caught_up(t, d, 10.0, Duration::from_secs(60)).await;
    caught_up(t, e, 10.0, Duration::from_secs(60)).await;
    let (held, held_http, grace, unchecked) = (
        scratch("late-held"),
        scratch("late-held-http"),
        scratch("late-grace"),
        scratch("late-unchecked"),
    );
    // the runs start a few minutes back, all at the same window
    let start = from.max(now() - 5 * TF).div_euclid(TF) * TF;
    for dir in [&held, &held_http, &grace, &unchecked] {
        seed_state(dir, start);
    }
    // the HTTP source asks the same watermark of Thanos Query's PromQL
    let http = [("SOURCE", "http"), ("PROMETHEUS_URL", t.late_http.as_str())];

    // d's link is cut (its samples wait in its Prometheus' WAL, and arrive once it heals);
    // e's Prometheus is killed as an agent restart is, and started again with its WAL once a
    // whole window of the outage is due (what it did not scrape meanwhile never arrives).
    // Both well inside one window: with d cut in a window's last second and e killed in the
    // next one's first, e lagged only from a window after d's, where the run stopped, and the
    // run rightly named d alone.
    let at = now();
    let into = at.rem_euclid(TF);
    if !(10..=TF - 20).contains(&into) {
        until(at - into + if into < 10 { 10 } else { TF + 10 }).await;
    }
    link(t, d, "cut").await;
    let cut_at = now();
    let runs_at = window_end(cut_at) + TF + SETTLE + 5;
    let restart = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/stack/restart.sh"))
        // down until the four runs of the outage are done, however loaded the machine
        .args([
            format!("prometheus-{e}"),
            (runs_at - cut_at + 40).to_string(),
        ])
        .spawn()
        .expect("integration/stack/restart.sh");
    until(runs_at).await;
    let out = run_late(t, &held, &[]).await;
    assert_exit_0_naming(
        &out,
        &[
            &format!("cluster {d}'s data lags by"),
            &format!("cluster {e}'s data lags by"),
        ],
    );
    // held from the window of the cut: the one before when the cut fell just after a window
    // began (d's last sample sent before it), the next when it fell in a window's last scrape
    let until_held = exported_until(&held);
    let cut_window = cut_at.div_euclid(TF) * TF;
    assert!(
        (cut_window - TF..=cut_window + TF).contains(&until_held),
        "held from the window of the cut at {cut_at}, not {until_held}"
    );
    assert!(
        windows_of(&held).iter().all(|&w| w < until_held),
        "no file of a held window"
    );
    let out = run_late(t, &held_http, &http).await;
    assert_exit_0_naming(&out, &[&format!("cluster {d}'s data lags by")]);
    assert_eq!(
        exported_until(&held_http),
        until_held,
        "the same hold over HTTP"
    );
    let out = run_late(t, &unchecked, &[("WATERMARK_METRIC", "")]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let out = run_late(t, &grace, &[("LATE_DATA_GRACE", "30s")]).await;
    assert_exit_0_naming(&out, &["are exported without its late data"]);
    let incomplete = state(&grace)["late"]["incomplete"].clone();
    let lagged: Vec<&str> = incomplete
        .as_object()
        .into_iter()
        .flat_map(|w| w.values())
        .filter_map(|c| c.as_object())
        .flat_map(|c| c.keys().map(String::as_str))
        .collect();
    assert!(
        lagged.contains(&d) && lagged.contains(&e),
        "the windows exported without d and e are remembered: {}",
        state(&grace)
    );

    // d's link healed: the WAL's backlog arrives; e is back
    link(t, d, "heal").await;
    let restarted = tokio::task::spawn_blocking(move || restart.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(restarted.status.success(), "restart.sh failed");
    caught_up(t, d, 10.0, Duration::from_secs(120)).await;
    caught_up(t, e, 10.0, Duration::from_secs(120)).await;
    let healed = now();
    until(window_end(healed) + SETTLE + 2).await;
    for (dir, extra) in [(&held, &[][..]), (&held_http, &http[..])] {
        let out = run_late(t, dir, extra).await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    let out = run_late(t, &grace, &[("LATE_DATA_GRACE", "30s")]).await;
    assert_exit_0_naming(
        &out,
        &[
            "writing their files again",
            "did not change a window exported without it",
        ],
    );
    assert!(
        state(&grace)["late"].get("incomplete").is_none(),
        "nothing left to correct: {}",
        state(&grace)
    );
    let end = [&held, &held_http, &grace]
        .map(|d| exported_until(d))
        .into_iter()
        .min()
        .unwrap();
    assert!(
        end >= window_end(healed),
        "the windows of the outage are exported: {end}"
    );
    let range = (start, end);
    let oracle = http_export(t, "late-oracle", range);
    for dir in [&held, &held_http, &grace] {
        let p = compare(dir, &oracle, windows_in(range));
        assert!(p.points > 1000, "{}: {p:?}", dir.display());
    }
    // without the check, the windows of the cut hold d's last samples carried forward
    let wrong = d_files_differing(&unchecked, &oracle, d, range);
    eprintln!("without the check: {wrong} of cluster {d}'s files differ from Thanos Query");
    assert!(wrong > 0, "the cut left wrong files without the check");
}
