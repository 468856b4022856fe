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
                crate::support::bucket::objects_in(&s3_client(endpoint), prefix).await
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
            // two windows a request, so a fault can come after a batch was written; the
            // reference runs keep the default (one), so each rerun also compares batch sizes
            ("WINDOWS_PER_REQUEST", "2".into()),
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
    reference_from(name, hours, source, (&s.thanos_grpc, &s.thanos_http)).await
}

/// The same from the Querier at `(grpc, http)`.
async fn reference_from(
    name: &str,
    hours: i64,
    source: &str,
    (grpc, http): (&str, &str),
) -> BTreeMap<String, Vec<u8>> {
    let s = stack();
    let dir = scratch(&format!("faults-reference-{name}"));
    let (from, to) = (
        s.data_from.to_string(),
        (s.data_from + hours * HOUR).to_string(),
    );
    let (out_dir, grpc, http) = (
        dir.display().to_string(),
        grpc.to_string(),
        http.to_string(),
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

/// A store dropped by Thanos Query: the completeness check.
mod completeness;
/// The exporter itself killed at random moments of a backfill.
mod killed;
/// The output directory full or read-only.
mod local;
/// S3 frozen, killed, restarted, answering 503; SIGTERM during a frozen upload.
mod s3;
/// Thanos Query frozen, killed, restarted; a sidecar down; the HTTP API frozen.
mod thanos;
