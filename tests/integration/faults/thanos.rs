//! Thanos Query, sidecar and HTTP API faults on peers of the test's own.

use super::*;
use crate::support::exporter::window_of;

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
        let t = window_of(k);
        if t < until {
            assert_eq!(objs.get(k), Some(v), "{k} of an exported window");
        }
    }
    peers.restart("sidecar-b");
    peers.wait_for_query("query", &http, endpoints.len()).await;
    peers
        .wait_for_answer(
            &http,
            r#"count(kube_node_info{cluster="b"})"#,
            stack().data_from + HOUR,
        )
        .await;
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
