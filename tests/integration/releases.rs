//! The Thanos releases users run: besides the stack's own (the newest, v0.42.4), a Querier of
//! each older release the stack built (`THANOS_OLDER`: v0.31.0, the oldest the exporter
//! reads, and v0.37.2), over sidecars of the same release in front of the stack's Prometheus
//! (the HA pair a-0/a-1 with its offset replicas and its gap, and b). The exporter finds the
//! release in the Querier's build info, and its gRPC export equals that Querier's own
//! `query_range` on the backfilled history (counter resets, pods starting inside windows) and
//! on live windows; forced to another era's semantics it does not. A mixed fleet (the newest
//! Querier over the oldest release's sidecars) exports what the all-new fleet does.
//!
//! The eras part on different data: v0.31 to v0.34 against the newest wherever a counter starts
//! inside a rate's range (the zero clamp) and at the first sample of a replica merge; v0.35 to
//! v0.37 only where a sample falls exactly on a range's left edge, which live scrapes and this
//! history (scrapes jittered by milliseconds) almost never hold: the engine's unit tests hold
//! that edge (`engine::tests`), the v0.37.2 Querier here is told apart from v0.31's.

use std::path::Path;

use storeapi_exporter::engine::Semantics;

use std::process::Output;

use crate::support::exporter::{describe, files, read_json, run, scratch, state_of, windows_of};
use crate::support::peers::Peers;
use crate::support::stack::{stack, topology};
use crate::topology::{LIVE_ARGS, PREFIX, Parity, compare, export, live_windows};

/// Six windows of the history: a container restart (hour 3) and replica a-0's 15 minutes
/// without scrapes (hour 5), pods of batch jobs starting and ending inside them.
fn history() -> (i64, i64) {
    let s = stack();
    (s.data_from + 2 * 3600, s.data_from + 8 * 3600)
}

/// Sidecars of `release` in front of the stack's Prometheus (as `sidecar-<instance>`); their
/// gRPC addresses by instance.
async fn sidecars(peers: &mut Peers, release: &str) -> Vec<(String, String)> {
    let s = stack();
    let mut out = Vec::new();
    for (inst, url) in &s.prometheus {
        let data = s.dir.join(format!("run/prom-{inst}/data"));
        let name = format!("sidecar-{inst}");
        let addr = peers.start_sidecar_of(&name, release, url, &data).await;
        out.push((inst.clone(), addr));
    }
    out
}

fn addrs(sidecars: &[(String, String)]) -> Vec<String> {
    sidecars.iter().map(|(_, a)| a.clone()).collect()
}

/// `run` with its state in `dir` against the Querier at `(grpc, http)`, the clock `hours` into
/// the data (and ten minutes), from its start.
async fn run_at(dir: &Path, (grpc, http): (&str, &str), hours: i64) -> Output {
    let s = stack();
    let now = (s.data_from + hours * 3600 + 600).to_string();
    let backfill = format!("{hours}h");
    let env: Vec<(String, String)> = [
        ("STORE_ENDPOINT", grpc),
        ("PROMETHEUS_URL", http),
        ("OUTPUT_DIR", dir.to_str().unwrap()),
        ("S3_PREFIX", PREFIX),
        ("CLUSTER_NAME", "home"),
        ("EXPORTER_NOW", now.as_str()),
        ("BACKFILL_DAYS", backfill.as_str()),
        ("RETENTION_DAYS", "0"),
        ("RETRIES", "2"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    run(&[], env).await
}

/// gRPC (the release found from `http`'s build info, or `extra`'s QUERIER_VERSION) against
/// the Querier's HTTP over `range`: their directories, and the gRPC export's log.
fn both(
    name: &str,
    grpc: &str,
    http: &str,
    range: (i64, i64),
    extra: &[&str],
) -> (String, String, String) {
    let g = scratch(&format!("{name}-grpc"));
    let h = scratch(&format!("{name}-http"));
    let out = export("grpc", &g, range, grpc, http, extra);
    assert!(out.status.success(), "{name} grpc: {}", describe(&out));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let out = export("http", &h, range, grpc, http, extra);
    assert!(out.status.success(), "{name} http: {}", describe(&out));
    (g.display().to_string(), h.display().to_string(), log)
}

/// The files of `g` whose content differs from `h`'s.
fn differing(g: &Path, h: &Path) -> usize {
    files(g)
        .iter()
        .filter(|f| read_json(&g.join(f)) != read_json(&h.join(f)))
        .count()
}

fn parity(g: &str, h: &str) -> Parity {
    compare(Path::new(g), Path::new(h), |_| true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_release_s_querier_is_followed() {
    let s = stack();
    let t = topology();
    assert!(
        !s.thanos_older.is_empty(),
        "THANOS_OLDER names the releases"
    );
    for release in &s.thanos_older {
        let dir = scratch(&format!("release-{release}"));
        let mut peers = Peers::new(&dir);
        let stores = sidecars(&mut peers, release).await;
        let (grpc, http) = peers
            .start_query_of("query", Some(release), &addrs(&stores))
            .await;
        let name = format!("release-{release}-history");
        let (g, h, log) = both(&name, &grpc, &http, history(), &[]);
        assert!(
            log.contains("the Querier's release") && log.contains(release.trim_start_matches('v')),
            "{release} found from its build info: {log}"
        );
        let p = parity(&g, &h);
        eprintln!("{release}: history {p:?}");
        assert!(p.points > 10_000, "{release}: {p:?}");
        // the semantics it was found to have, forced to another era's: not its answer
        let other = match Semantics::of_thanos(release) {
            Ok(Semantics::ThanosLegacy) => "v0.42.4",
            _ => "v0.34.1",
        };
        let forced = format!("{name}-as-{other}");
        let (fg, _, _) = both(
            &forced,
            &grpc,
            &http,
            history(),
            &["--querier-version", other],
        );
        let wrong = differing(Path::new(&fg), Path::new(&h));
        eprintln!("{release}: with {other}'s semantics {wrong} files differ from its Querier");
        assert!(wrong > 0, "{release}: the semantics matter on this data");
        let live = live_windows(t, 2, 20);
        let name = format!("release-{release}-live");
        let (g, h, _) = both(&name, &grpc, &http, live, LIVE_ARGS);
        let p = parity(&g, &h);
        assert!(p.points > 1000, "{release}: live {p:?}");

        // completeness: cluster b's only sidecar dropped by this Querier is not a cluster
        // without data; no file of its windows, the state before them
        let dir = scratch(&format!("release-{release}-completeness"));
        let out = run_at(&dir, (&grpc, &http), 3).await;
        assert!(out.status.success(), "{release}: {}", describe(&out));
        let (_, b) = stores.iter().find(|(i, _)| i == "b").unwrap();
        peers.kill("sidecar-b");
        peers.wait_for_store_error(&http, b).await;
        let out = run_at(&dir, (&grpc, &http), 6).await;
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let refused =
            out.status.code() == Some(3) && err.contains("no queryable store serves cluster b (");
        let held = out.status.code() == Some(0) && err.contains("cluster b's data lags by");
        eprintln!(
            "{release}: b's sidecar dropped: exit {:?} (refused: {refused}, held: {held})",
            out.status.code()
        );
        assert!(refused || held, "{release}: {}", describe(&out));
        let start = s.data_from + 3 * 3600;
        let until = state_of(&dir, PREFIX)["exported_until"].as_i64();
        assert_eq!(until, Some(start), "{release}: the state did not move");
        assert!(
            windows_of(&dir).iter().all(|&w| w < start),
            "{release}: no file of the windows without b"
        );
    }
}

/// A mixed fleet's own Querier answers no PromQL at all (the old sidecars panic on its query
/// hints: 422 "proxy Series(): ... Aborted"), so the oracle is the all-new fleet over the same
/// data, over the hours before the HA pair's gap: at a switch between replicas a counter's
/// running total starts where each release's sidecar cuts its chunks, and the two differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_querier_over_the_oldest_sidecars_exports_what_the_newest_fleet_does() {
    let s = stack();
    let oldest = s.thanos_older.first().expect("THANOS_OLDER");
    let dir = scratch("release-mixed");
    let mut peers = Peers::new(&dir);
    let stores = sidecars(&mut peers, oldest).await;
    let (grpc, http) = peers.start_query_of("query", None, &addrs(&stores)).await;
    let before_gap = (history().0, s.data_from + 5 * 3600);
    let g = scratch("release-mixed-grpc");
    let out = export("grpc", &g, before_gap, &grpc, &http, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    // the stack's own Querier: the newest release over its sidecars and store gateway
    let h = scratch("release-mixed-newest-fleet");
    let out = export("http", &h, before_gap, &s.thanos_grpc, &s.thanos_http, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let p = compare(&g, &h, |_| true);
    assert!(p.points > 10_000, "{p:?}");
}
