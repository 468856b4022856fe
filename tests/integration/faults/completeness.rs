//! A store that drops out of Thanos Query: the Querier answers without it and without a
//! warning once its health check failed, so only the exporter's completeness check stands
//! between that and a cluster-hour of nothing. Each test runs a Thanos Query of its own over
//! the stack's sidecars of cluster a and a Prometheus with a sidecar of its own (over a copy
//! of the stack's data), so that one can be killed.

use super::*;
use crate::support::exporter::window_of;
use crate::support::stack::topology;

/// A Querier over the stack's sidecars of the instances `stack_instances`, the stack's store
/// gateway when `gateway`, and a Prometheus with a sidecar of the test's own as `name`, over
/// a copy of `instance`'s data in cluster `cluster`; its gRPC and HTTP addresses and the
/// sidecar's.
async fn querier(
    peers: &mut Peers,
    stack_instances: &[&str],
    gateway: bool,
    (name, instance, cluster): (&str, &str, &str),
) -> (String, String, String) {
    let t = topology();
    let mut endpoints: Vec<String> = stack_instances
        .iter()
        .map(|i| {
            let (_, url) = t.sidecars.iter().find(|(inst, _)| inst == i).unwrap();
            url.trim_start_matches("http://").to_string()
        })
        .collect();
    if gateway {
        endpoints.push(t.store_grpc.trim_start_matches("http://").to_string());
    }
    let own = peers.start_prometheus(name, instance, cluster).await;
    endpoints.push(own.clone());
    let (grpc, http) = peers.start_query("query", &endpoints).await;
    (grpc, http, own)
}

/// Kills the sidecar `name` (at `addr`) and waits until the Querier at `http` has excluded it:
/// its `/api/v1/stores` entry shows the failed health check.
async fn kill_and_wait_excluded(peers: &mut Peers, name: &str, http: &str, addr: &str) {
    peers.kill(name);
    peers.wait_for_store_error(http, addr).await;
}

/// The objects of the windows starting in `[from, to)`.
fn windows_in(
    objs: &BTreeMap<String, Vec<u8>>,
    (from, to): (i64, i64),
) -> BTreeMap<String, Vec<u8>> {
    objs.iter()
        .filter(|(k, _)| k.ends_with(".json.gz"))
        .filter(|(k, _)| (from..to).contains(&window_of(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn cluster_of(key: &str) -> &str {
    key.split('/').next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completeness_a_clusters_only_sidecar_excluded_refuses_its_windows_until_it_is_back() {
    let dir = scratch("completeness-only-sidecar");
    let mut peers = Peers::new(&dir);
    let (grpc, http, own) =
        querier(&mut peers, &["a-0", "a-1"], false, ("sidecar-b", "b", "b")).await;
    // the windows as this Querier gives them undisturbed (the stack's own also reads the day
    // before the data from its store gateway)
    let reference = reference_from("completeness-only-sidecar", 6, "grpc", (&grpc, &http)).await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    // windows 0-2 with cluster b there: the state remembers it
    let out = run_to_end(run_env(&dest, &grpc, 3, &[])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill_and_wait_excluded(&mut peers, "sidecar-b", &http, &own).await;
    // the Querier now answers for cluster a alone, without a warning: the run is refused
    let env = run_env(&dest, &grpc, 6, &[]);
    let began = Instant::now();
    let out = run_to_end(env.clone()).await;
    let took = began.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!(
        "cluster b excluded: exit {:?} after {took:?}",
        out.status.code()
    );
    assert_eq!(out.status.code(), Some(3), "{err}");
    // five attempts of two Info calls, paused 15 s in all
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_logged(
        &err,
        &[
            "no queryable store serves cluster b (",
            "no data served since",
            "ABSENT_CLUSTER_GRACE",
        ],
    );
    let s = stack();
    assert_eq!(
        dest.state_until().await,
        Some(s.data_from + 3 * HOUR),
        "the state did not move"
    );
    let objs = dest.objects().await.unwrap();
    assert!(
        windows_in(&objs, (s.data_from + 3 * HOUR, s.data_from + 6 * HOUR)).is_empty(),
        "no file of a refused window"
    );
    // the HTTP source checks the same, from the Querier's /api/v1/stores
    let mut http_env = env.clone();
    http_env.extend([
        ("SOURCE".to_string(), "http".to_string()),
        ("PROMETHEUS_URL".to_string(), http.clone()),
        ("RETRIES".to_string(), "2".to_string()),
    ]);
    let out = run_to_end(http_env).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_logged(&err, &["no queryable store serves cluster b ("]);
    assert_eq!(dest.state_until().await, Some(s.data_from + 3 * HOUR));
    // back: the next run leaves exactly what an undisturbed run leaves
    peers.restart("sidecar-b");
    peers.wait_for_query("query", &http, 3).await;
    assert_rerun_completes(&dest, env, 6, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completeness_one_replica_of_the_pair_excluded_is_no_gap() {
    // Replica a-1 killed after 8 windows: a-0 scrapes 3.2 s earlier, so the deduplicated
    // answer is a-0's wherever a-0 has data. Where a-1's samples decide a point (a batch pod
    // ending between the replicas' scrapes, a-0's restart in hour 5) no export from one replica
    // can equal the pair's; windows 8 and 9 of the generated data have none (measured against
    // a Querier over a-0 alone), so the run over them must leave the pair's bytes.
    let dir = scratch("completeness-one-replica");
    let mut peers = Peers::new(&dir);
    let (grpc, http, own) =
        querier(&mut peers, &["a-0", "b"], false, ("sidecar-a1", "a-1", "a")).await;
    let hours = 10;
    let reference = reference_from("completeness-one-replica", hours, "grpc", (&grpc, &http)).await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    let out = run_to_end(run_env(&dest, &grpc, 8, &[])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill_and_wait_excluded(&mut peers, "sidecar-a1", &http, &own).await;
    let out = run_to_end(run_env(&dest, &grpc, hours, &[])).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_logged(
        &err,
        &["a replica of the HA pair is missing", "replica=\\\"a-1\\\""],
    );
    assert_eq!(
        err.matches("a replica of the HA pair is missing").count(),
        1,
        "once per run: {err}"
    );
    let mut objs = dest.objects().await.unwrap();
    objs.remove(STATE);
    assert_eq!(
        objs.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    assert!(objs == reference, "byte-identical to an undisturbed run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completeness_a_gateway_with_older_blocks_does_not_cover_recent_windows() {
    // the stack's store gateway holds cluster b's blocks up to the end of the data; b's own
    // sidecar is killed: the windows the gateway's blocks cover are exported from them, the
    // later ones are refused although the gateway still advertises b's labels
    let dir = scratch("completeness-gateway");
    let mut peers = Peers::new(&dir);
    let (grpc, http, own) =
        querier(&mut peers, &["a-0", "a-1"], true, ("sidecar-b", "b", "b")).await;
    kill_and_wait_excluded(&mut peers, "sidecar-b", &http, &own).await;
    let s = stack();
    let (from, to) = (s.data_to - 2 * HOUR, s.data_to + 2 * HOUR);
    let out_dir = dir.join("out");
    let out = exporter(
        &[
            "export",
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ],
        &[
            ("STORE_ENDPOINT", grpc.as_str()),
            ("OUTPUT_DIR", &out_dir.display().to_string()),
            ("S3_PREFIX", "faults"),
            ("CLUSTER_NAME", "home"),
            ("EXPORTER_NOW", &(to + SETTLE).to_string()),
            ("RETRIES", "2"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_logged(
        &err,
        &[
            "no queryable store serves cluster b (",
            "no data served since",
        ],
    );
    let objs = Dest::Dir {
        dir: out_dir,
        prefix: "faults".into(),
    }
    .objects()
    .await
    .unwrap();
    let before = windows_in(&objs, (from, s.data_to));
    assert!(
        before.keys().any(|k| cluster_of(k) == "b"),
        "the gateway's windows have cluster b: {:?}",
        objs.keys().collect::<Vec<_>>()
    );
    let reference = scratch("completeness-gateway-reference");
    let out = exporter(
        &[
            "export",
            "--from",
            &from.to_string(),
            "--to",
            &s.data_to.to_string(),
        ],
        &[
            ("STORE_ENDPOINT", s.thanos_grpc.as_str()),
            ("OUTPUT_DIR", &reference.display().to_string()),
            ("S3_PREFIX", "faults"),
            ("CLUSTER_NAME", "home"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = Dest::Dir {
        dir: reference,
        prefix: "faults".into(),
    }
    .objects()
    .await
    .unwrap();
    assert_eq!(before, reference, "as from the stack's own Querier");
    assert!(
        windows_in(&objs, (s.data_to, to)).is_empty(),
        "no file of the refused windows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completeness_a_cluster_absent_longer_than_the_grace_is_skipped_then_exported_when_back() {
    let dir = scratch("completeness-grace");
    let mut peers = Peers::new(&dir);
    let (grpc, http, own) =
        querier(&mut peers, &["a-0", "a-1"], false, ("sidecar-b", "b", "b")).await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    let grace = [("ABSENT_CLUSTER_GRACE", "1h")];
    let out = run_to_end(run_env(&dest, &grpc, 2, &grace)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill_and_wait_excluded(&mut peers, "sidecar-b", &http, &own).await;
    // b last served the window ending at 02:00; the clock is at 05:10
    let out = run_to_end(run_env(&dest, &grpc, 5, &grace)).await;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_logged(
        &err,
        &[
            "cluster b ({cluster=\\\"b\\\"}): no queryable store holds its data",
            "ABSENT_CLUSTER_GRACE",
        ],
    );
    let s = stack();
    let objs = dest.objects().await.unwrap();
    let absent = windows_in(&objs, (s.data_from + 2 * HOUR, s.data_from + 5 * HOUR));
    assert!(!absent.is_empty());
    assert!(
        absent.keys().all(|k| cluster_of(k) == "a"),
        "{:?}",
        absent.keys()
    );
    // back: expected again, and exported
    peers.restart("sidecar-b");
    peers.wait_for_query("query", &http, 3).await;
    let out = run_to_end(run_env(&dest, &grpc, 7, &grace)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objs = dest.objects().await.unwrap();
    let back = windows_in(&objs, (s.data_from + 5 * HOUR, s.data_from + 7 * HOUR));
    assert_eq!(back.keys().filter(|k| cluster_of(k) == "b").count(), 2 * 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completeness_a_store_dropped_mid_run_fails_its_window() {
    // killed while the run exports a window at a time: whichever check sees it (the stream
    // failing under ABORT while the Querier still asks it, or the inventory once it does not),
    // no window is counted without cluster b, and the retries outlast the Querier's exclusion
    let dir = scratch("completeness-mid-run");
    let mut peers = Peers::new(&dir);
    let (grpc, http, _) =
        querier(&mut peers, &["a-0", "a-1"], false, ("sidecar-b", "b", "b")).await;
    let hours = 12;
    let reference = reference_from("completeness-mid-run", hours, "grpc", (&grpc, &http)).await;
    let dest = Dest::Dir {
        dir: dir.join("out"),
        prefix: "faults".into(),
    };
    let env = run_env(
        &dest,
        &grpc,
        hours,
        &[("WINDOWS_PER_REQUEST", "1"), ("RETRIES", "5")],
    );
    let mut run = spawn(&env, &dir.join("run.log"));
    run.wait_for_state(&dest, stack().data_from + HOUR).await;
    peers.kill("sidecar-b");
    let (code, took) = run.exit_within(Duration::from_secs(120)).await;
    let err = run.stderr();
    eprintln!("a store dropped mid-run: exit {code:?} after {took:?}");
    assert_eq!(code, Some(3), "{err}");
    let until = dest.state_until().await.unwrap();
    assert!(until < stack().data_from + hours * HOUR, "{err}");
    let objs = dest.objects().await.unwrap();
    for (k, v) in &reference {
        if window_of(k) < until {
            assert_eq!(objs.get(k), Some(v), "{k} of a window the state counts");
        }
    }
    peers.restart("sidecar-b");
    peers.wait_for_query("query", &http, 3).await;
    assert_rerun_completes(&dest, env, hours, &reference).await;
}
