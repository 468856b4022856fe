use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::source::watermark::{ClusterMark, Watermarks};

const TF: i64 = 60;
const T0: i64 = 1_765_000_800; // a minute boundary
const S: i64 = 1000;

fn lateness(grace: u64, horizon: u64) -> Lateness {
    Lateness {
        settings: LateSettings {
            metric: "kube_node_info".into(),
            grace: Duration::from_secs(grace),
            horizon: Duration::from_secs(horizon),
        },
        time_frame: TF,
        shard: None,
    }
}

/// A cluster scraped every 10 s: its name, newest sample (seconds) and samples per window.
type Cluster<'a> = (&'a str, i64, &'a [(i64, u64)]);

fn marks(clusters: &[Cluster]) -> Watermarks {
    Watermarks {
        clusters: clusters
            .iter()
            .map(|&(c, newest, samples)| {
                let mark = ClusterMark {
                    newest_ms: newest * S,
                    interval_ms: Some(10 * S),
                    samples: samples.iter().copied().collect(),
                };
                (c.to_string(), mark)
            })
            .collect(),
        stats: Default::default(),
    }
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

fn windows(n: i64) -> Vec<i64> {
    (0..n).map(|k| T0 + k * TF).collect()
}

#[test]
fn current_clusters_hold_nothing() {
    let now = T0 + 10 * TF + 30;
    let m = marks(&[("a", now - 3, &[]), ("b", now - 12, &[])]);
    let plan = lateness(3600, 86_400).plan(&windows(10), &m, &LateData::default(), now, &none());
    assert_eq!(plan.ready, 10);
    assert!(
        plan.holding.is_empty() && plan.lagging.is_empty(),
        "{plan:?}"
    );
    assert!(plan.incomplete.is_empty() && plan.corrections.is_empty());
}

#[test]
fn a_lagging_cluster_holds_the_first_window_past_its_data() {
    // b's newest sample is 20 s into the 4th window: the first three are past, the 4th waits
    let now = T0 + 10 * TF + 30;
    let m = marks(&[("a", now - 3, &[]), ("b", T0 + 3 * TF + 20, &[])]);
    let plan = lateness(3600, 86_400).plan(&windows(10), &m, &LateData::default(), now, &none());
    assert_eq!(plan.ready, 3);
    let lag = Lag {
        cluster: "b".into(),
        newest_ms: (T0 + 3 * TF + 20) * S,
        seconds: now - (T0 + 3 * TF + 20),
    };
    assert_eq!(plan.holding, vec![lag.clone()]);
    assert_eq!(plan.lagging, vec![lag]);
    assert!(plan.incomplete.is_empty());
    // what else reads the data waits for b's data too, within the grace: up to its newest
    // sample and an interval (10 s here), as for a window's end
    assert_eq!(plan.complete_until, Some(T0 + 3 * TF + 20 + 10));
    // a cluster whose last scrape came an interval before an end has arrived up to that end
    // (the telemetry day ending there is not held for it)
    let stopped = marks(&[("a", now - 3, &[]), ("b", T0 + 4 * TF - 10, &[])]);
    let plan =
        lateness(3600, 86_400).plan(&windows(10), &stopped, &LateData::default(), now, &none());
    assert_eq!(plan.ready, 4);
    assert_eq!(plan.complete_until, Some(T0 + 4 * TF));
    let plan = lateness(60, 86_400).plan(&windows(10), &m, &LateData::default(), now, &none());
    assert_eq!(plan.complete_until, None, "b lags past the grace");
}

#[test]
fn a_sample_at_the_window_s_end_is_past_it_and_a_window_just_ended_waits_for_no_one_current() {
    let now = T0 + 2 * TF + 5;
    // b's newest is exactly the first window's end; a's is 5 s old: current, though the
    // second window ended 5 s ago and a has no sample past it yet
    let m = marks(&[("a", now - 5, &[]), ("b", T0 + TF, &[])]);
    let plan = lateness(3600, 86_400).plan(&windows(2), &m, &LateData::default(), now, &none());
    assert_eq!(plan.ready, 1);
    assert_eq!(plan.holding.len(), 1);
    assert_eq!(plan.holding[0].cluster, "b");
}

#[test]
fn past_the_grace_windows_are_written_without_the_lagging_cluster_and_remembered() {
    // b stopped 2 h ago; the grace is 1 h: windows that ended over an hour ago go out without
    // b (with its samples in them now), the last hour's wait
    let now = T0 + 200 * TF;
    let stopped = T0 + 80 * TF + 10;
    let m = marks(&[
        ("a", now - 1, &[]),
        ("b", stopped, &[(T0 + 79 * TF, 6), (T0 + 80 * TF, 1)]),
    ]);
    let plan = lateness(3600, 86_400).plan(&windows(200), &m, &LateData::default(), now, &none());
    // window k ends at T0 + (k + 1) TF; held while now - end < 3600, i.e. from k = 140
    assert_eq!(plan.ready, 140);
    assert_eq!(plan.held, 60);
    assert_eq!(plan.incomplete.len(), 140 - 80);
    assert_eq!(
        plan.incomplete[&(T0 + 80 * TF)],
        BTreeMap::from([("b".into(), 1)])
    );
    assert_eq!(
        plan.incomplete[&(T0 + 81 * TF)],
        BTreeMap::from([("b".into(), 0)])
    );
    assert!(
        !plan.incomplete.contains_key(&(T0 + 79 * TF)),
        "b is past it"
    );
    assert_eq!(plan.holding[0].cluster, "b");
    // a grace of 0 never waits
    let plan = lateness(0, 86_400).plan(&windows(200), &m, &LateData::default(), now, &none());
    assert_eq!(plan.ready, 200);
    assert_eq!(plan.incomplete.len(), 200 - 80);
    assert!(plan.holding.is_empty());
}

#[test]
fn a_remembered_cluster_missing_from_the_answer_is_behind_since_its_last_sample() {
    let now = T0 + 10 * TF + 30;
    let m = marks(&[("a", now - 3, &[])]);
    let mut late = LateData::default();
    late.clusters.insert("b".into(), (T0 + 5 * TF) * S);
    let plan = lateness(3600, 86_400).plan(&windows(10), &m, &late, now, &none());
    // the answer gave no interval for b: a minute's tolerance, its last sample ends window 5
    assert_eq!(
        plan.ready, 6,
        "the window ending a minute after b's last sample is past"
    );
    assert_eq!(plan.holding[0].cluster, "b");
    // one whose last sample is older than the horizon is no longer expected
    late.clusters.insert("b".into(), (now - 86_401) * S);
    let plan = lateness(3600, 86_400).plan(&windows(10), &m, &late, now, &none());
    assert_eq!(plan.ready, 10);
    assert!(plan.lagging.is_empty());
}

#[test]
fn a_shard_waits_only_for_its_own_clusters() {
    let now = T0 + 10 * TF + 30;
    let m = marks(&[("a", now - 3, &[]), ("b", T0, &[])]);
    let mut l = lateness(3600, 86_400);
    let shard = Shard { index: 0, count: 2 };
    l.shard = Some(shard);
    let plan = l.plan(&windows(10), &m, &LateData::default(), now, &none());
    let b_is_mine = shard.owns("b");
    assert_eq!(plan.ready, if b_is_mine { 0 } else { 10 });
}

#[test]
fn a_cluster_whose_store_is_missing_is_left_to_the_completeness_check() {
    let now = T0 + 10 * TF + 30;
    let m = marks(&[("a", now - 3, &[]), ("b", T0, &[])]);
    let excused = BTreeSet::from(["b".to_string()]);
    let plan = lateness(3600, 86_400).plan(&windows(10), &m, &LateData::default(), now, &excused);
    assert_eq!(plan.ready, 10);
    assert!(plan.lagging.is_empty() && plan.incomplete.is_empty());
}

#[test]
fn incomplete_windows_are_corrected_once_their_cluster_caught_up_with_new_samples() {
    let now = T0 + 300 * TF;
    let w = |k: i64| T0 + k * TF;
    let mut late = LateData::default();
    late.incomplete
        .insert(w(10), BTreeMap::from([("b".into(), 2)]));
    late.incomplete
        .insert(w(11), BTreeMap::from([("b".into(), 0), ("c".into(), 0)]));
    late.incomplete
        .insert(w(12), BTreeMap::from([("b".into(), 0)]));
    late.incomplete
        .insert(w(290), BTreeMap::from([("d".into(), 3)]));
    late.clusters.insert("d".into(), w(290) * S);
    // b caught up: its samples of w10 and w11 grew, of w12 did not (lost for good); c has not
    // come back and d is still behind, both within the horizon
    let m = marks(&[
        ("a", now - 1, &[]),
        ("b", now - 2, &[(w(10), 6), (w(11), 6), (w(12), 0)]),
        ("c", w(11) + 1, &[]),
        ("d", w(290), &[(w(290), 3)]),
    ]);
    let plan = lateness(600, 5 * 3600).plan(&[], &m, &late, now, &none());
    assert_eq!(
        plan.corrections,
        BTreeMap::from([
            (w(10), BTreeSet::from(["b".to_string()])),
            (w(11), BTreeSet::from(["b".to_string()])),
        ])
    );
    assert_eq!(
        plan.settled,
        vec![(w(12), "b".to_string(), Settled::Unchanged)]
    );
    // past the horizon a window is no longer written again, whatever its cluster does
    let plan = lateness(600, 4 * 3600).plan(&[], &m, &late, now, &none());
    assert_eq!(
        plan.settled,
        vec![
            (w(10), "b".to_string(), Settled::Expired),
            (w(11), "b".to_string(), Settled::Expired),
            (w(11), "c".to_string(), Settled::Expired),
            (w(12), "b".to_string(), Settled::Expired),
        ]
    );
    assert!(plan.corrections.is_empty(), "{plan:?}");
    // a cluster whose store is missing keeps its windows for when the store is back
    let excused = BTreeSet::from(["b".to_string()]);
    let plan = lateness(600, 5 * 3600).plan(&[], &m, &late, now, &excused);
    assert!(
        plan.corrections.is_empty() && plan.settled.is_empty(),
        "{plan:?}"
    );
}

#[test]
fn the_request_starts_at_the_first_window_to_write_or_to_check_again() {
    let l = lateness(3600, 86_400);
    let mut late = LateData::default();
    let until = T0 - 2 * TF;
    assert_eq!(
        l.since(&[], &late, until),
        None,
        "nothing to write, nothing lags"
    );
    assert_eq!(l.since(&[T0, T0 + TF], &late, until), Some(T0 * S));
    // while a cluster lags, the runs that only wait ask too
    late.lagging.insert("b".into());
    assert_eq!(l.since(&[], &late, until), Some(until * S));
    late.incomplete.insert(T0 - 5 * TF, BTreeMap::new());
    assert_eq!(l.since(&[T0], &late, until), Some((T0 - 5 * TF) * S));
    assert_eq!(l.since(&[], &late, until), Some((T0 - 5 * TF) * S));
}

#[test]
fn the_state_remembers_each_cluster_s_newest_sample_until_the_horizon() {
    let l = lateness(3600, 86_400);
    let now = T0 + 100 * 86_400;
    let mut late = LateData::default();
    late.clusters.insert("a".into(), (now - 100) * S);
    late.clusters.insert("old".into(), (now - 86_401) * S);
    l.remember(
        &mut late,
        &marks(&[("a", now - 200, &[]), ("b", now - 5, &[])]),
        now,
    );
    assert_eq!(
        late.clusters,
        BTreeMap::from([("a".into(), (now - 100) * S), ("b".into(), (now - 5) * S)])
    );
}

#[test]
fn the_state_reads_and_writes_without_late_data_as_before() {
    let empty = serde_json::to_string(&LateData::default()).unwrap();
    assert_eq!(empty, "{}");
    let back: LateData = serde_json::from_str("{}").unwrap();
    assert!(back.is_empty());
}
