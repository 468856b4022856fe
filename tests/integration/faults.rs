//! The fault matrix: each peer frozen (SIGSTOP), killed or restarted under a running `run`, on
//! real processes started by the test itself (its own S3 server, Thanos Query, Prometheus and
//! sidecar; never the shared stack's). Each row checks the exit code, the time to exit against
//! the budget the settings imply (src/cli/settings.rs, `fault_budget`), and that a rerun
//! afterwards leaves exactly the objects and bytes of an undisturbed run. Timeouts are
//! shortened by flags so the matrix runs in minutes; the README's fault table gives the same
//! rows at the default settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use crate::support::exporter::{exporter, exporter_command, files, scratch};
use crate::support::peers::{Peers, stores};
use crate::support::s3_proxy::{self, Fault};
use crate::support::stack::stack;

const HOUR: i64 = 3600;
const SETTLE: i64 = 600;
const STATE: &str = "home/storeapi-exporter-state.json";
/// Slack over a budget for process start, scheduling on a loaded 2-core machine, and exit.
const SLACK: Duration = Duration::from_secs(10);

/// Where a run writes: a bucket on an S3 server, or a directory.
#[derive(Clone)]
enum Dest {
    S3 { endpoint: String, prefix: String },
    Dir { dir: PathBuf, prefix: String },
}

impl Dest {
    fn env(&self) -> Vec<(String, String)> {
        let s = stack();
        match self {
            Dest::S3 { endpoint, prefix } => vec![
                ("S3_ENDPOINT".into(), endpoint.clone()),
                ("S3_BUCKET".into(), s.bucket.clone()),
                ("AWS_ACCESS_KEY_ID".into(), s.access_key.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), s.secret_key.clone()),
                ("AWS_REGION".into(), "us-east-1".into()),
                ("S3_PREFIX".into(), prefix.clone()),
            ],
            Dest::Dir { dir, prefix } => vec![
                ("OUTPUT_DIR".into(), dir.display().to_string()),
                ("S3_PREFIX".into(), prefix.clone()),
            ],
        }
    }

    /// Every object (key relative to the prefix) with its bytes; `None` when the destination
    /// does not answer.
    async fn objects(&self) -> Option<BTreeMap<String, Vec<u8>>> {
        match self {
            Dest::Dir { dir, prefix } => {
                let root = dir.join(prefix);
                Some(
                    files(&root)
                        .into_iter()
                        .map(|k| {
                            let b = std::fs::read(root.join(&k)).unwrap();
                            (k, b)
                        })
                        .collect(),
                )
            }
            Dest::S3 { endpoint, prefix } => {
                let c = s3_client(endpoint);
                let bucket = &stack().bucket;
                let mut out = BTreeMap::new();
                let mut pages = c
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(format!("{prefix}/"))
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    for o in page.ok()?.contents() {
                        let key = o.key().unwrap().to_string();
                        let body = c.get_object().bucket(bucket).key(&key).send().await.ok()?;
                        let bytes = body.body.collect().await.ok()?.into_bytes().to_vec();
                        out.insert(key[prefix.len() + 1..].to_string(), bytes);
                    }
                }
                Some(out)
            }
        }
    }

    /// The state's `exported_until`.
    async fn state_until(&self) -> Option<i64> {
        let body = match self {
            Dest::Dir { dir, prefix } => std::fs::read(dir.join(prefix).join(STATE)).ok()?,
            Dest::S3 { endpoint, prefix } => {
                let got = s3_client(endpoint)
                    .get_object()
                    .bucket(&stack().bucket)
                    .key(format!("{prefix}/{STATE}"))
                    .send()
                    .await
                    .ok()?;
                got.body.collect().await.ok()?.into_bytes().to_vec()
            }
        };
        serde_json::from_slice::<serde_json::Value>(&body).ok()?["exported_until"].as_i64()
    }
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let s = stack();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            &s.access_key,
            &s.secret_key,
            None,
            None,
            "tests",
        ))
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A `run` of `hours` windows from the start of the data, reading `store`, writing `dest`.
fn run_env(dest: &Dest, store: &str, hours: i64, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let s = stack();
    let mut env = dest.env();
    env.extend(
        [
            ("STORE_ENDPOINT", store.to_string()),
            ("CLUSTER_NAME", "home".into()),
            (
                "EXPORTER_NOW",
                (s.data_from + hours * HOUR + SETTLE).to_string(),
            ),
            ("SETTLE_DELAY", SETTLE.to_string()),
            ("BACKFILL_DAYS", format!("{hours}h")),
            ("RETENTION_DAYS", "0".into()),
            ("PROGRESS_INTERVAL", "1s".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    for (k, v) in extra {
        env.retain(|(x, _)| x != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// A running exporter whose log goes to a file.
struct Running {
    child: Child,
    log: PathBuf,
}

fn spawn(env: &[(String, String)], log: &Path) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let child = exporter_command(&[], &env)
        .stderr(std::fs::File::create(log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Running {
        child,
        log: log.to_path_buf(),
    }
}

impl Running {
    /// Waits until the state moved past `after` (a window was exported), or panics when the run
    /// ends first.
    async fn wait_for_state(&mut self, dest: &Dest, after: i64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while dest.state_until().await.is_none_or(|u| u <= after) {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the run ended before the fault: {}",
                self.stderr()
            );
            assert!(Instant::now() < deadline, "no window exported in 120 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit, at most `limit`; the exit code and the time it took.
    async fn exit_within(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), began.elapsed());
            }
            if began.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("no exit within {limit:?}: the run hangs\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `run` to its end.
async fn run_to_end(env: Vec<(String, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        exporter(&[], &env)
    })
    .await
    .unwrap()
}

/// The data files of an undisturbed export of the first `hours` windows, from the stack's own
/// Querier, keyed as under a prefix.
async fn reference(name: &str, hours: i64, source: &str) -> BTreeMap<String, Vec<u8>> {
    let s = stack();
    let dir = scratch(&format!("faults-reference-{name}"));
    let (from, to) = (
        s.data_from.to_string(),
        (s.data_from + hours * HOUR).to_string(),
    );
    let (out_dir, grpc, http) = (
        dir.display().to_string(),
        s.thanos_grpc.clone(),
        s.thanos_http.clone(),
    );
    let source = source.to_string();
    let out = tokio::task::spawn_blocking(move || {
        exporter(
            &["export", "--from", &from, "--to", &to, "--source", &source],
            &[
                ("STORE_ENDPOINT", grpc.as_str()),
                ("PROMETHEUS_URL", http.as_str()),
                ("OUTPUT_DIR", out_dir.as_str()),
                ("S3_PREFIX", "ref"),
                ("CLUSTER_NAME", "home"),
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "reference export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objs = Dest::Dir {
        dir,
        prefix: "ref".into(),
    }
    .objects()
    .await
    .unwrap();
    assert_eq!(
        objs.len() as i64,
        hours * 38,
        "19 metrics x 2 clusters per window"
    );
    objs
}

/// The rerun invariant: a run after the fault (the peer back) succeeds, and the destination
/// then holds exactly the reference's files, byte for byte, and the state at the end; no
/// temporary file, nothing else.
async fn assert_rerun_completes(
    dest: &Dest,
    env: Vec<(String, String)>,
    hours: i64,
    reference: &BTreeMap<String, Vec<u8>>,
) {
    let out = run_to_end(env).await;
    assert!(
        out.status.success(),
        "the rerun after the fault: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut objs = dest.objects().await.expect("the destination answers");
    let state = objs.remove(STATE).expect("a state");
    let v: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(v["exported_until"], stack().data_from + hours * HOUR);
    assert_eq!(
        objs.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "no window missing, none extra, no temporary file"
    );
    assert!(&objs == reference, "byte-identical to an undisturbed run");
}

fn assert_logged(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "the log names {n:?}:\n{stderr}");
    }
}

/// The StoreAPI endpoints behind the stack's Querier, with their label sets.
async fn stack_stores() -> Vec<(String, String)> {
    let list = stores(&stack().thanos_http).await;
    assert!(!list.is_empty(), "the stack's Querier lists its stores");
    list
}

// ---- S3 -----------------------------------------------------------------------------------

/// S3 timeouts short enough for a test: an operation is given up on after 4 s.
const S3_SHORT: [(&str, &str); 4] = [
    ("S3_MAX_ATTEMPTS", "2"),
    ("S3_ATTEMPT_TIMEOUT", "2s"),
    ("S3_OPERATION_TIMEOUT", "4s"),
    ("RETRIES", "2"),
];
/// Their budget: 2 window attempts x one 4 s operation + 1 s pause.
const S3_SHORT_BUDGET: Duration = Duration::from_secs(2 * 4 + 1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_s3_frozen_mid_run_exits_3_in_budget_naming_the_endpoint() {
    let dir = scratch("fault-s3-frozen");
    let mut peers = Peers::new(&dir);
    let endpoint = peers.start_s3("s3").await;
    let hours = 6;
    let reference = reference("s3-frozen", hours, "grpc").await;
    let dest = Dest::S3 {
        endpoint: endpoint.clone(),
        prefix: "faults/s3-frozen".into(),
    };
    let store = stack().thanos_grpc.clone();
    let env = run_env(&dest, &store, hours, &S3_SHORT);
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.freeze("s3");
    let (code, took) = run.exit_within(S3_SHORT_BUDGET + SLACK).await;
    eprintln!("fault s3 frozen: exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(3), "{err}");
    assert_logged(
        &err,
        &[
            "no progress: waiting for a call",
            &format!("\"endpoint\":\"{endpoint}\""),
            &format!("the S3 endpoint {endpoint} kept failing"),
            "S3_ATTEMPT_TIMEOUT",
        ],
    );
    peers.thaw("s3");
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_s3_killed_mid_upload_exits_3_then_rerun_after_restart() {
    let dir = scratch("fault-s3-killed");
    let mut peers = Peers::new(&dir);
    let endpoint = peers.start_s3("s3").await;
    let hours = 6;
    let reference = reference("s3-killed", hours, "grpc").await;
    let dest = Dest::S3 {
        endpoint: endpoint.clone(),
        prefix: "faults/s3-killed".into(),
    };
    let store = stack().thanos_grpc.clone();
    let env = run_env(&dest, &store, hours, &S3_SHORT);
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.kill("s3");
    let (code, took) = run.exit_within(S3_SHORT_BUDGET + SLACK).await;
    eprintln!("fault s3 killed: exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(3), "{err}");
    assert_logged(&err, &[&format!("the S3 endpoint {endpoint} kept failing")]);
    peers.restart("s3");
    peers.wait_for_s3("s3", &endpoint).await;
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_s3_restarted_mid_run_is_retried_through() {
    let dir = scratch("fault-s3-restarted");
    let mut peers = Peers::new(&dir);
    let endpoint = peers.start_s3("s3").await;
    let hours = 4;
    let reference = reference("s3-restarted", hours, "grpc").await;
    let dest = Dest::S3 {
        endpoint: endpoint.clone(),
        prefix: "faults/s3-restarted".into(),
    };
    let store = stack().thanos_grpc.clone();
    // the default retries (5 window attempts, 15 s of pauses) outlast a restart
    let env = run_env(&dest, &store, hours, &[]);
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.kill("s3");
    tokio::time::sleep(Duration::from_secs(1)).await;
    peers.restart("s3");
    let (code, took) = run.exit_within(Duration::from_secs(120)).await;
    eprintln!("fault s3 restarted: exit {code:?} after {took:?}");
    assert_eq!(code, Some(0), "{}", run.stderr());
    // the run itself completed: a rerun has nothing to do and changes nothing
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_s3_503_for_a_while_fails_then_recovers() {
    // a fault proxy: no real server answers 503 on demand
    let s = stack();
    let hours = 3;
    let reference = reference("s3-503", hours, "grpc").await;
    let storm = Duration::from_secs(15);
    let proxy = s3_proxy::start(&s.s3_endpoint, Fault::SlowDownUntil(Instant::now() + storm)).await;
    let began = Instant::now();
    let dest = Dest::S3 {
        endpoint: proxy.url.clone(),
        prefix: "faults/s3-503".into(),
    };
    for (k, _) in dest.objects().await.unwrap_or_default() {
        let _ = s3_client(&s.s3_endpoint)
            .delete_object()
            .bucket(&s.bucket)
            .key(format!("faults/s3-503/{k}"))
            .send()
            .await;
    }
    let env = run_env(&dest, &s.thanos_grpc, hours, &S3_SHORT);
    let dir = scratch("fault-s3-503");
    let mut run = spawn(&env, &dir.join("run.log"));
    let (code, took) = run.exit_within(S3_SHORT_BUDGET + SLACK).await;
    eprintln!("fault s3 503 storm: exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(3), "{err}");
    assert_logged(&err, &["SlowDown", "kept failing"]);
    assert_eq!(
        dest.state_until().await,
        Some(s.data_from),
        "no window passed"
    );
    tokio::time::sleep(storm.saturating_sub(began.elapsed())).await;
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sigterm_during_a_frozen_upload_exits_6_within_the_grace_period() {
    let dir = scratch("fault-sigterm-frozen");
    let mut peers = Peers::new(&dir);
    let endpoint = peers.start_s3("s3").await;
    let hours = 6;
    let reference = reference("sigterm-frozen", hours, "grpc").await;
    let dest = Dest::S3 {
        endpoint: endpoint.clone(),
        prefix: "faults/sigterm".into(),
    };
    let store = stack().thanos_grpc.clone();
    // uploads that would hang for minutes: only the shutdown timeout ends them
    let env = run_env(
        &dest,
        &store,
        hours,
        &[
            ("S3_ATTEMPT_TIMEOUT", "5m"),
            ("S3_OPERATION_TIMEOUT", "10m"),
            ("SHUTDOWN_TIMEOUT", "3s"),
        ],
    );
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.freeze("s3");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pid = run.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // SHUTDOWN_TIMEOUT + the exit
    let (code, took) = run.exit_within(Duration::from_secs(3) + SLACK).await;
    eprintln!("fault sigterm during a frozen upload: exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(6), "{err}");
    assert_logged(&err, &["abandon", "no progress: waiting for a call"]);
    peers.thaw("s3");
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

// ---- Thanos Query -------------------------------------------------------------------------

/// StoreAPI timeouts short enough for a test.
const QUERY_SHORT: [(&str, &str); 3] = [
    ("QUERY_IDLE_TIMEOUT", "3s"),
    ("QUERY_TIMEOUT", "30s"),
    ("RETRIES", "2"),
];
/// Their budget: 2 attempts x 3 s idle + 1 s pause.
const QUERY_SHORT_BUDGET: Duration = Duration::from_secs(2 * 3 + 1);

/// A Thanos Query of the test's own over every store of the stack's Querier.
async fn own_query(peers: &mut Peers) -> (String, String) {
    let endpoints: Vec<String> = stack_stores().await.into_iter().map(|(n, _)| n).collect();
    peers.start_query("query", &endpoints).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_query_frozen_mid_stream_exits_3_in_budget_naming_the_endpoint() {
    let dir = scratch("fault-query-frozen");
    let mut peers = Peers::new(&dir);
    let (grpc, _) = own_query(&mut peers).await;
    let hours = 6;
    let reference = reference("query-frozen", hours, "grpc").await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    let env = run_env(&dest, &grpc, hours, &QUERY_SHORT);
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.freeze("query");
    let (code, took) = run.exit_within(QUERY_SHORT_BUDGET + SLACK).await;
    eprintln!("fault query frozen: exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(3), "{err}");
    assert_logged(
        &err,
        &[&format!("to {grpc} received nothing"), "QUERY_IDLE_TIMEOUT"],
    );
    peers.thaw("query");
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_query_killed_mid_stream_exits_3_then_rerun_after_restart() {
    let dir = scratch("fault-query-killed");
    let mut peers = Peers::new(&dir);
    let (grpc, http) = own_query(&mut peers).await;
    let n = stores(&http).await.len();
    let hours = 6;
    let reference = reference("query-killed", hours, "grpc").await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    let env = run_env(&dest, &grpc, hours, &QUERY_SHORT);
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.kill("query");
    let (code, took) = run.exit_within(QUERY_SHORT_BUDGET + SLACK).await;
    eprintln!("fault query killed: exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(3), "{err}");
    assert_logged(&err, &[&grpc]);
    peers.restart("query");
    peers.wait_for_query("query", &http, n).await;
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_query_restarted_mid_stream_is_retried_through() {
    let dir = scratch("fault-query-restarted");
    let mut peers = Peers::new(&dir);
    let (grpc, _) = own_query(&mut peers).await;
    let hours = 4;
    let reference = reference("query-restarted", hours, "grpc").await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    let env = run_env(&dest, &grpc, hours, &[]);
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.kill("query");
    peers.restart("query");
    let (code, took) = run.exit_within(Duration::from_secs(120)).await;
    eprintln!("fault query restarted: exit {code:?} after {took:?}");
    assert_eq!(code, Some(0), "{}", run.stderr());
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_one_sidecar_down_behind_a_live_querier_fails_the_window() {
    // cluster b's sidecar is the test's own (over a copy of its data), so it can be killed;
    // the other stores are the stack's
    let dir = scratch("fault-sidecar-down");
    let mut peers = Peers::new(&dir);
    let mut endpoints: Vec<String> = stack_stores()
        .await
        .into_iter()
        .filter(|(_, labels)| {
            !(labels.contains("\"cluster\":\"b\"")
                && labels.contains("\"replica\":\"b\"")
                && !labels.contains("\"cluster\":\"a\""))
        })
        .map(|(n, _)| n)
        .collect();
    let sidecar = peers.start_prometheus("sidecar-b", "b", "b").await;
    endpoints.push(sidecar);
    let (grpc, http) = peers.start_query("query", &endpoints).await;
    let hours = 6;
    let reference = reference("sidecar-down", hours, "grpc").await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    let env = run_env(&dest, &grpc, hours, &QUERY_SHORT);
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.kill("sidecar-b");
    let (code, took) = run.exit_within(QUERY_SHORT_BUDGET + SLACK).await;
    eprintln!("fault one sidecar down: exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(3), "{err}");
    // every window the state counts is whole: cluster b's files are there for each
    let until = dest.state_until().await.unwrap();
    let objs = dest.objects().await.unwrap();
    for (k, v) in &reference {
        let t: i64 = k
            .rsplit('/')
            .next()
            .unwrap()
            .split('_')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if t < until {
            assert_eq!(objs.get(k), Some(v), "{k} of an exported window");
        }
    }
    peers.restart("sidecar-b");
    peers.wait_for_query("query", &http, endpoints.len()).await;
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_http_api_frozen_exits_3_for_the_http_source_and_the_readiness_probe() {
    let dir = scratch("fault-http-frozen");
    let mut peers = Peers::new(&dir);
    let (_, http) = own_query(&mut peers).await;
    let hours = 3;
    let reference = reference("http-frozen", hours, "http").await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    let store = stack().thanos_grpc.clone();
    let short = [("QUERY_TIMEOUT", "3s"), ("RETRIES", "2")];
    let mut env = run_env(&dest, &store, hours, &short);
    env.push(("SOURCE".into(), "http".into()));
    env.push(("PROMETHEUS_URL".into(), http.clone()));
    peers.freeze("query");

    // --source http: 2 attempts x 3 s + 1 s, after the readiness probe's 3 x 3 s + 4 s
    let mut run = spawn(&env, &dir.join("run-http.log"));
    let (code, took) = run.exit_within(Duration::from_secs(13 + 7) + SLACK).await;
    eprintln!("fault http api frozen (readiness of --source http): exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(3), "{err}");
    assert_logged(&err, &["the HTTP API is not ready", &http]);

    // the probe alone, for --source grpc with an HTTP address configured
    let grpc_env: Vec<(String, String)> =
        env.iter().filter(|(k, _)| k != "SOURCE").cloned().collect();
    let mut run = spawn(&grpc_env, &dir.join("run-probe.log"));
    let (code, took) = run.exit_within(Duration::from_secs(13) + SLACK).await;
    eprintln!("fault http api frozen (readiness, --source grpc): exit {code:?} after {took:?}");
    assert_eq!(code, Some(3), "{}", run.stderr());
    assert!(
        dest.state_until().await.is_none(),
        "nothing written before the probe"
    );

    // frozen after the probe, mid-run: each query times out
    peers.thaw("query");
    let mut run = spawn(&env, &dir.join("run-mid.log"));
    run.wait_for_state(&dest, stack().data_from).await;
    peers.freeze("query");
    let (code, took) = run.exit_within(Duration::from_secs(7) + SLACK).await;
    eprintln!("fault http api frozen mid-run (--source http): exit {code:?} after {took:?}");
    let err = run.stderr();
    assert_eq!(code, Some(3), "{err}");
    assert_logged(&err, &["QUERY_TIMEOUT", &http]);
    peers.thaw("query");
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

// ---- the local directory ------------------------------------------------------------------

/// A tmpfs of `size` mounted on `dir` (the tests run as root), unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs on {} (the fault tests run as root)",
            dir.display()
        );
        Mount(dir.to_path_buf())
    }

    fn remount(&self, options: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {options}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_output_dir_full_then_read_only_exit_3_and_2_then_rerun_is_whole() {
    let dir = scratch("fault-output-dir");
    let hours = 6;
    let reference = reference("output-dir", hours, "grpc").await;
    let window_bytes: usize = reference.values().map(Vec::len).sum::<usize>() / hours as usize;
    // room for about two windows
    let mount = Mount::tmpfs(
        &dir.join("fs"),
        &format!("{}k", 5 * window_bytes / 2 / 1024),
    );
    let dest = Dest::Dir {
        dir: dir.join("fs"),
        prefix: "faults".into(),
    };
    let store = stack().thanos_grpc.clone();
    let env = run_env(&dest, &store, hours, &[("RETRIES", "2")]);
    let out = run_to_end(env.clone()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("fault output dir full: exit {:?}", out.status.code());
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_logged(&err, &["No space left on device", "OUTPUT_DIR is full"]);
    let until = dest.state_until().await.unwrap();
    assert!(
        until > stack().data_from && until < stack().data_from + hours * HOUR,
        "stopped mid-run"
    );
    assert!(
        files(&dir.join("fs")).iter().all(|f| !f.contains(".tmp-")),
        "no temporary file left"
    );

    mount.remount("ro");
    let began = Instant::now();
    let out = run_to_end(env.clone()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "fault output dir read-only: exit {:?} after {:?}",
        out.status.code(),
        began.elapsed()
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_logged(
        &err,
        &["Read-only file system", "OUTPUT_DIR must be writable"],
    );

    mount.remount("rw,size=64m");
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

// ---- the exporter killed ------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so the kill moments repeat run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sigkill_at_20_seeded_moments_of_a_backfill_then_rerun() {
    let s = stack();
    let hours = 12;
    let reference = reference("sigkill", hours, "grpc").await;
    let dir = scratch("fault-sigkill");
    // S3, as in production: an upload cut by the kill leaves no object (a directory would keep
    // the killed writer's temporary file)
    let dest = Dest::S3 {
        endpoint: s.s3_endpoint.clone(),
        prefix: "faults/sigkill".into(),
    };
    let c = s3_client(&s.s3_endpoint);
    for k in dest.objects().await.unwrap_or_default().keys() {
        let _ = c
            .delete_object()
            .bucket(&s.bucket)
            .key(format!("faults/sigkill/{k}"))
            .send()
            .await;
    }
    let env = run_env(&dest, &s.thanos_grpc, hours, &[]);
    let mut rng = Rng(0x05EE_D0FF_A017);
    let mut last = None;
    for i in 0..20 {
        let at = Duration::from_millis(100 + rng.next() % 2400);
        let mut run = spawn(&env, &dir.join(format!("run-{i}.log")));
        tokio::time::sleep(at).await;
        let _ = run.child.kill();
        let _ = run.child.wait();
        // each interrupted run left whole windows only, and the state never goes back
        let until = dest.state_until().await;
        assert!(
            until >= last,
            "the state went back from {last:?} to {until:?}"
        );
        last = until;
        if let Some(objs) = dest.objects().await {
            for (k, v) in objs.iter().filter(|(k, _)| k.ends_with(".json.gz")) {
                assert_eq!(
                    reference.get(k),
                    Some(v),
                    "{k}: a whole file of the reference"
                );
            }
        }
    }
    eprintln!("fault sigkill x20: the state reached {last:?} before the last rerun");
    assert_rerun_completes(&dest, env, hours, &reference).await;
}
