//! `run` (the CronJob) against the stack's real S3 server: state, resume, retention, and the
//! failures a production bucket gives, each with its exit code and message and never a
//! partial object.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::bucket::{clear, client, objects, put};
use crate::support::exporter::{describe, exporter_command, files, log_event, run, scratch, with};
use crate::support::s3_proxy::{self, Fault};
use crate::support::stack::stack;

const HOUR: i64 = 3600;
/// The settle delay the tests run with.
const SETTLE: i64 = 600;
/// Files of one window: 19 metrics x 2 clusters.
const FILES_PER_WINDOW: usize = 38;

/// The data files only (not the state), by key.
fn data(objs: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    objs.iter()
        .filter(|(k, _)| k.ends_with(".json.gz"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The state's `exported_until`.
fn exported_until(objs: &BTreeMap<String, Vec<u8>>) -> Option<i64> {
    let s = objs.get("home/storeapi-exporter-state.json")?;
    let v: serde_json::Value = serde_json::from_slice(s).unwrap();
    v["exported_until"].as_i64()
}

/// The state's `exported_until` under `prefix`, read alone.
async fn state_until(prefix: &str) -> Option<i64> {
    let got = client()
        .get_object()
        .bucket(&stack().bucket)
        .key(format!("{prefix}/home/storeapi-exporter-state.json"))
        .send()
        .await
        .ok()?;
    let bytes = got.body.collect().await.ok()?.into_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["exported_until"].as_i64()
}

/// Every data object is a whole gzip JSON body (nothing partial under a final key).
fn assert_whole(objs: &BTreeMap<String, Vec<u8>>) {
    for (k, body) in data(objs) {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut s)
            .unwrap_or_else(|e| panic!("{k} is not whole gzip: {e}"));
        let v: serde_json::Value =
            serde_json::from_str(&s).unwrap_or_else(|e| panic!("{k} is not whole JSON: {e}"));
        assert_eq!(v["status"], "success", "{k}");
    }
}

/// The environment of a run under `prefix`, at `now`, against `s3` (the server or a proxy).
fn env(prefix: &str, now: i64, s3: &str) -> Vec<(String, String)> {
    let s = stack();
    [
        ("STORE_ENDPOINT", s.thanos_grpc.clone()),
        ("S3_ENDPOINT", s3.to_string()),
        ("S3_BUCKET", s.bucket.clone()),
        ("AWS_ACCESS_KEY_ID", s.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s.secret_key.clone()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("S3_PREFIX", prefix.to_string()),
        ("CLUSTER_NAME", "home".to_string()),
        ("EXPORTER_NOW", now.to_string()),
        ("SETTLE_DELAY", SETTLE.to_string()),
        ("BACKFILL_DAYS", "6h".to_string()),
        ("RETENTION_DAYS", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn window_set(objs: &BTreeMap<String, Vec<u8>>) -> Vec<i64> {
    let mut w: Vec<i64> = data(objs)
        .keys()
        .map(|k| {
            let file = k.rsplit('/').next().unwrap();
            file.split('_').next().unwrap().parse().unwrap()
        })
        .collect();
    w.sort();
    w.dedup();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_backfills_then_has_nothing_to_do_then_exports_only_new_windows() {
    let s = stack();
    let prefix = "it/run-steps";
    clear(prefix).await;
    let t0 = s.data_from;
    let now = t0 + 6 * HOUR + SETTLE;

    let out = run(&[], env(prefix, now, &s.s3_endpoint)).await;
    assert!(out.status.success(), "first run: {}", describe(&out));
    let first = objects(prefix).await;
    assert_eq!(
        data(&first).len(),
        6 * FILES_PER_WINDOW,
        "BACKFILL_DAYS=6h: six windows"
    );
    assert_eq!(
        window_set(&first),
        (0..6).map(|h| t0 + h * HOUR).collect::<Vec<_>>()
    );
    assert_eq!(exported_until(&first), Some(t0 + 6 * HOUR));
    assert_whole(&first);
    let summary = log_event(&out, "run finished").expect("a summary event");
    assert_eq!(summary["windows"], 6);
    assert_eq!(summary["files_written"], 6 * FILES_PER_WINDOW as u64);
    assert!(summary["bytes_in"].as_u64().unwrap() > 0);

    let out = run(&["run"], env(prefix, now, &s.s3_endpoint)).await;
    assert!(out.status.success(), "second run: {}", describe(&out));
    assert_eq!(log_event(&out, "run finished").unwrap()["windows"], 0);
    let second = objects(prefix).await;
    assert_eq!(data(&second), data(&first), "nothing rewritten");

    let out = run(&[], env(prefix, now + 2 * HOUR, &s.s3_endpoint)).await;
    assert!(out.status.success(), "later run: {}", describe(&out));
    assert_eq!(log_event(&out, "run finished").unwrap()["windows"], 2);
    let third = objects(prefix).await;
    assert_eq!(
        window_set(&third),
        (0..8).map(|h| t0 + h * HOUR).collect::<Vec<_>>(),
        "exactly the two new windows"
    );
    assert_eq!(data(&third).len(), 8 * FILES_PER_WINDOW);
    assert_eq!(exported_until(&third), Some(t0 + 8 * HOUR));

    // the same windows exported to a directory: the same keys, the same bytes
    let dir = scratch("s3-vs-dir");
    let out = run(
        &[
            "export",
            "--from",
            &t0.to_string(),
            "--to",
            &(t0 + 8 * HOUR).to_string(),
            "--output-dir",
            dir.to_str().unwrap(),
        ],
        env(prefix, now, &s.s3_endpoint),
    )
    .await;
    assert!(
        out.status.success(),
        "export to a directory: {}",
        describe(&out)
    );
    let local: BTreeMap<String, Vec<u8>> = files(&dir.join(prefix))
        .into_iter()
        .map(|k| {
            let body = std::fs::read(dir.join(prefix).join(&k)).unwrap();
            (k, body)
        })
        .collect();
    assert_eq!(local.len(), data(&third).len());
    assert!(
        local == data(&third),
        "S3 objects byte-identical to --output-dir files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steady_state_holds_due_windows_for_the_batch_delay_then_packs_them_from_the_state() {
    // the CronJob every 30 minutes at BATCH_DELAY=3h: due windows wait until the oldest is 3 h
    // old, then go in one run whose requests are packed from what the state remembers (no
    // window asked entry by entry); the files equal a run that exports each window as it comes
    let s = stack();
    let (prefix, eager) = ("it/run-steady", "it/run-eager");
    clear(prefix).await;
    clear(eager).await;
    let t0 = s.data_from;
    let with_delay = |now: i64| {
        let mut e = env(prefix, now, &s.s3_endpoint);
        e.push(("BATCH_DELAY".into(), "3h".into()));
        e.push(("BACKFILL_DAYS".into(), "2h".into()));
        e
    };
    // the first run backfills: its oldest window is 2 h 10 m old at 02:10, so it waits
    let now = t0 + 2 * HOUR + SETTLE;
    let out = run(&[], with_delay(now)).await;
    assert!(out.status.success(), "{}", describe(&out));
    let held = log_event(
        &out,
        "windows due are held until the oldest is BATCH_DELAY old, then exported together",
    )
    .expect("the hold is logged");
    assert_eq!(held["windows_due"], 2);
    assert_eq!(log_event(&out, "run finished").unwrap()["windows"], 0);
    let mut delays = Vec::new();
    let mut runs_exporting = 0;
    let mut exported = t0;
    let mut calls_per_window = Vec::new();
    for k in 1..=12 {
        let now = now + k * 1800;
        let out = run(&[], with_delay(now)).await;
        assert!(out.status.success(), "{}", describe(&out));
        let summary = log_event(&out, "run finished").unwrap();
        let windows = summary["windows"].as_i64().unwrap();
        if windows > 0 {
            runs_exporting += 1;
            for w in 0..windows {
                delays.push(now - (exported + (w + 1) * HOUR));
            }
            exported += windows * HOUR;
            calls_per_window.push(summary["calls"].as_f64().unwrap() / windows as f64);
        }
    }
    assert_eq!(exported_until(&objects(prefix).await), Some(exported));
    assert!(
        (2..=3).contains(&runs_exporting),
        "{runs_exporting} runs exported"
    );
    assert!(
        delays.iter().all(|&d| d <= 3 * HOUR + 1800 + SETTLE),
        "{delays:?}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&objects(prefix).await["home/storeapi-exporter-state.json"])
            .unwrap();
    assert!(
        state["packing"]["cpu_usage"].is_object(),
        "the requests' sizes are remembered: {state}"
    );
    // packed from the state: far fewer calls per window than the 49 of a window asked
    // entry by entry
    assert!(
        calls_per_window.iter().skip(1).all(|&c| c < 20.0),
        "{calls_per_window:?}"
    );
    let mut e = env(eager, exported + SETTLE, &s.s3_endpoint);
    e.push((
        "BACKFILL_DAYS".into(),
        format!("{}h", (exported - t0) / HOUR),
    ));
    let out = run(&[], e).await;
    assert!(out.status.success(), "{}", describe(&out));
    let (steady, eager) = (objects(prefix).await, objects(eager).await);
    assert_eq!(window_set(&steady), window_set(&eager));
    assert!(data(&steady) == data(&eager), "byte-identical files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigkill_mid_backfill_then_resume_equals_an_uninterrupted_run() {
    let s = stack();
    let (prefix, reference) = ("it/killed", "it/uninterrupted");
    clear(prefix).await;
    clear(reference).await;
    let t0 = s.data_from;
    let now = t0 + 24 * HOUR + SETTLE;
    // the state moves past a batch of windows at once: batches of two, so that the run is
    // interrupted between batches and in the middle of one
    let e = with(
        env(prefix, now, &s.s3_endpoint),
        &[
            ("BACKFILL_DAYS", "1"),
            ("WINDOW_CONCURRENCY", "1"),
            ("WINDOWS_PER_REQUEST", "2"),
        ],
    );

    // waits until the state moved past `after`, then signals the process
    async fn interrupt(
        e: &[(String, String)],
        prefix: &str,
        after: i64,
        signal: &str,
    ) -> (Option<i32>, String) {
        let env: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut child = exporter_command(&[], &env)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if state_until(prefix).await.is_some_and(|u| u > after) {
                break;
            }
            assert!(Instant::now() < deadline, "no window exported within 60 s");
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before it was interrupted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    let (code, stderr) = interrupt(&e, prefix, t0, "-TERM").await;
    assert_eq!(
        code,
        Some(6),
        "SIGTERM: the interrupted exit code\n{stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    let after_term = state_until(prefix).await.unwrap();
    assert!(after_term < t0 + 24 * HOUR, "stopped before the end");
    assert_eq!(after_term % HOUR, 0, "the state is on a window boundary");

    let (code, _) = interrupt(&e, prefix, after_term, "-KILL").await;
    assert_eq!(code, None, "killed by a signal");
    let after_kill = state_until(prefix).await.unwrap();
    assert!(
        after_kill > after_term && after_kill < t0 + 24 * HOUR,
        "killed mid-backfill"
    );

    let out = run(&[], e.clone()).await;
    assert!(out.status.success(), "resumed run: {}", describe(&out));
    let resumed = objects(prefix).await;

    // the reference asks 24 windows per request: the same bytes as two at a time
    let out = run(
        &[],
        with(
            e,
            &[("S3_PREFIX", reference), ("WINDOWS_PER_REQUEST", "24")],
        ),
    )
    .await;
    assert!(out.status.success(), "reference run: {}", describe(&out));
    let whole = objects(reference).await;

    assert_eq!(data(&whole).len(), 24 * FILES_PER_WINDOW);
    assert_eq!(
        data(&resumed).keys().collect::<Vec<_>>(),
        data(&whole).keys().collect::<Vec<_>>(),
        "no window skipped, none duplicated"
    );
    assert!(data(&resumed) == data(&whole), "the same bytes");
    assert_eq!(exported_until(&resumed), exported_until(&whole));
    assert_whole(&resumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_a_missing_bucket_are_configuration_errors() {
    let s = stack();
    let prefix = "it/bad-s3";
    clear(prefix).await;
    let now = s.data_from + HOUR + SETTLE;

    let out = run(
        &[],
        with(
            env(prefix, now, &s.s3_endpoint),
            &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SignatureDoesNotMatch"),
        "the server's reason: {err}"
    );
    assert!(
        err.contains("credentials were refused"),
        "what to fix: {err}"
    );

    let out = run(
        &[],
        with(
            env(prefix, now, &s.s3_endpoint),
            &[("S3_BUCKET", "no-such-bucket-here")],
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\\\"no-such-bucket-here\\\" does not exist"),
        "names the bucket: {err}"
    );
    assert!(err.contains("check S3_BUCKET"), "what to fix: {err}");

    let out = run(
        &[],
        with(
            env(prefix, now, &s.s3_endpoint),
            &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS credentials"), "{err}");
    assert!(objects(prefix).await.is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_storm_is_retried_through_and_one_that_lasts_fails_with_nothing_partial() {
    let s = stack();
    let t0 = s.data_from;
    let now = t0 + 2 * HOUR + SETTLE;

    // a short storm: the SDK's and the window's retries carry the run through it
    let prefix = "it/storm-short";
    clear(prefix).await;
    let proxy = s3_proxy::start(
        &s.s3_endpoint,
        Fault::SlowDownUntil(Instant::now() + Duration::from_secs(3)),
    )
    .await;
    let out = run(
        &[],
        with(
            env(prefix, now, &proxy.url),
            &[("S3_MAX_ATTEMPTS", "2"), ("BACKFILL_DAYS", "2h")],
        ),
    )
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let objs = objects(prefix).await;
    assert_eq!(data(&objs).len(), 2 * FILES_PER_WINDOW);
    assert_eq!(exported_until(&objs), Some(t0 + 2 * HOUR));
    assert_whole(&objs);

    // a storm that outlasts every retry: exit 3, the state does not move, nothing partial
    let prefix = "it/storm-long";
    clear(prefix).await;
    let proxy = s3_proxy::start(
        &s.s3_endpoint,
        Fault::SlowDownUntil(Instant::now() + Duration::from_secs(3600)),
    )
    .await;
    let out = run(
        &[],
        with(
            env(prefix, now, &proxy.url),
            &[
                ("S3_MAX_ATTEMPTS", "2"),
                ("RETRIES", "2"),
                ("BACKFILL_DAYS", "2h"),
            ],
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SlowDown"), "the server's reason: {err}");
    assert!(err.contains("kept failing"), "{err}");
    let objs = objects(prefix).await;
    assert!(data(&objs).is_empty(), "no data object: {:?}", objs.keys());
    assert_eq!(exported_until(&objs), Some(t0), "the state did not move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_the_expired_files_and_a_denied_delete_is_reported() {
    let s = stack();
    let prefix = "it/retention";
    clear(prefix).await;
    clear("it/retention-other").await;
    let t0 = s.data_from;

    let out = run(&[], env(prefix, t0 + 6 * HOUR + SETTLE, &s.s3_endpoint)).await;
    assert!(out.status.success(), "{}", describe(&out));
    // another exporter's cluster, another prefix, and a file that is not ours
    let foreign = [
        format!("{prefix}/other/end=20251101/day=31/metric=cpu_usage/{t0}_cpu_usage.json.gz"),
        format!("it/retention-other/a/end=20251101/day=31/metric=cpu_usage/{t0}_cpu_usage.json.gz"),
        format!("{prefix}/a/end=20251101/day=31/metric=cpu_usage/notes.txt"),
    ];
    for k in &foreign {
        put(k, b"not ours").await;
    }

    // two hours later with a 3 h retention: windows before 05:10 expire (00:00 to 05:00)
    let later = t0 + 8 * HOUR + SETTLE;
    let e = with(
        env(prefix, later, &s.s3_endpoint),
        &[("RETENTION_DAYS", "3h")],
    );
    let proxy = s3_proxy::start(&s.s3_endpoint, Fault::DenyDelete).await;
    let out = run(&[], with(e.clone(), &[("S3_ENDPOINT", &proxy.url)])).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AccessDenied"), "{err}");
    assert!(
        err.contains("s3:DeleteObject"),
        "names the permission: {err}"
    );
    let objs = objects(prefix).await;
    assert_eq!(
        exported_until(&objs),
        Some(t0 + 8 * HOUR),
        "the export itself completed"
    );
    assert_eq!(
        data(&objs).len(),
        8 * FILES_PER_WINDOW + 1,
        "nothing deleted"
    );

    let out = run(&[], e).await;
    assert!(out.status.success(), "{}", describe(&out));
    let summary = log_event(&out, "run finished").unwrap();
    assert_eq!(summary["files_deleted"], 6 * FILES_PER_WINDOW as u64);
    let objs = objects(prefix).await;
    assert_eq!(
        window_set(&objs),
        vec![t0, t0 + 6 * HOUR, t0 + 7 * HOUR],
        "windows 06:00 and 07:00 kept, and the other cluster's old file"
    );
    assert_eq!(data(&objs).len(), 2 * FILES_PER_WINDOW + 1);
    assert!(objs.contains_key(&foreign[0][prefix.len() + 1..]));
    assert!(objs.contains_key(&foreign[2][prefix.len() + 1..]));
    assert!(objs.contains_key("home/storeapi-exporter-state.json"));
    assert_eq!(objects("it/retention-other").await.len(), 1);
}
