//! S3 faults on a server of the test's own.

use super::*;

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
