use super::*;

const H: i64 = 3600;
// 2025-11-01T00:00Z, and the run's clock 10 minutes after 06:00
const T0: i64 = 1_761_955_200;
const NOW: i64 = T0 + 6 * H + 600;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn served(cluster: &str, replica: &str, from: i64, to: i64) -> Served {
    Served {
        labels: labels(&[("cluster", cluster)]),
        replica: if replica.is_empty() {
            String::new()
        } else {
            format!("replica={replica:?}")
        },
        min_time: from * 1000,
        max_time: to.saturating_mul(1000),
    }
}

/// A sidecar's range: from its first data, open-ended.
fn sidecar(cluster: &str, replica: &str, from: i64) -> Served {
    let mut s = served(cluster, replica, from, 0);
    s.max_time = i64::MAX;
    s
}

fn guard(grace_h: Option<i64>) -> Completeness {
    let source = InventorySource::Stores {
        client: reqwest::Client::new(),
        url: String::new(),
    };
    let mut c = Completeness::new(
        source,
        vec!["replica".into()],
        "cluster".into(),
        None,
        grace_h.map(|h| Duration::from_secs((h * H) as u64)),
    );
    c.now = NOW;
    c
}

fn inventory(served: Vec<Served>) -> Inventory {
    Inventory {
        served,
        coarse: false,
    }
}

/// The state a run left that exported up to `until` with these sources serving, ten minutes
/// after that window.
fn remembered(inv: &Inventory, until: i64) -> BTreeMap<String, SourceSeen> {
    let mut earlier = guard(None);
    earlier.now = until + 600;
    let mut sources = BTreeMap::new();
    let seen: BTreeSet<String> = ["a", "b"].map(String::from).into();
    earlier.remember(&mut sources, inv, (until - H, H), &seen);
    sources
}

fn told(c: &Completeness) -> Vec<String> {
    c.told.lock().unwrap().iter().cloned().collect()
}

#[test]
fn ranges_cover_a_window_only_together_and_without_a_gap() {
    let s = |min_time, max_time| Served {
        min_time,
        max_time,
        ..served("a", "", 0, 0)
    };
    let m = 60_000;
    let (a, b, c) = (s(0, 10 * m), s(10 * m + 1, 20 * m), s(30 * m, 40 * m));
    assert!(covers(&[&a, &b], 0, 20 * m), "adjacent ranges join");
    assert!(covers(&[&b, &a], 5 * m, 15 * m), "in any order");
    assert!(!covers(&[&a, &c], 0, 40 * m), "a gap of 10 minutes");
    // blocks end at their last sample and start at their first: a scrape apart is no gap
    let (d, e) = (s(0, 10 * m - 15_000), s(10 * m + 15_000, 20 * m - 15_000));
    assert!(covers(&[&d, &e], 0, 20 * m - 1));
    assert!(!covers(&[], 0, 1), "nothing served");
    assert!(covers(&[], 5, 4), "an empty span");
}

#[test]
fn a_cluster_whose_only_store_left_refuses_the_windows_it_no_longer_covers() {
    let mut c = guard(Some(6));
    // cluster b's sidecar served the exported windows up to 03:00; a store gateway holds its
    // blocks up to 04:00 only
    let before = inventory(vec![
        sidecar("a", "", T0 - 24 * H),
        sidecar("b", "", T0 - 24 * H),
    ]);
    let state = remembered(&before, T0 + 3 * H);
    assert_eq!(state.len(), 2, "{state:?}");
    let gateway = served("b", "", T0 - 24 * H, T0 + 4 * H);
    let now = inventory(vec![sidecar("a", "", T0 - 24 * H), gateway]);
    c.expect(&state, &now);
    let v = c.verdict(&[T0 + 3 * H, T0 + 4 * H, T0 + 5 * H], H, Some(now.clone()));
    assert_eq!(
        v.complete, 1,
        "03:00 is in the gateway's blocks, 04:00 is not"
    );
    let why = v.refused.expect("refused").to_string();
    for needle in [
        "cluster b ({cluster=\"b\"}",
        "no data served since 2025-11-01T04:00:00Z; last served 2025-11-01T04:00:00Z, 2h10m ago",
        "/api/v1/stores",
        "ABSENT_CLUSTER_GRACE=21600s",
    ] {
        assert!(why.contains(needle), "{needle}: {why}");
    }
    assert!(!why.contains("cluster a"), "{why}");
    // without the state (`export`), the gateway's newest block is when b was last seen
    let mut fresh = guard(Some(6));
    fresh.expect(&BTreeMap::new(), &now);
    let v = fresh.verdict(&[T0 + 5 * H], H, Some(now));
    let why = v.refused.unwrap().to_string();
    assert!(why.contains("since 2025-11-01T04:00:00Z"), "{why}");
}

#[test]
fn one_replica_of_a_pair_missing_is_no_gap_and_is_told_once() {
    let mut c = guard(Some(6));
    let pair = inventory(vec![sidecar("a", "a-0", T0), sidecar("a", "a-1", T0)]);
    let state = remembered(&pair, T0 + 5 * H);
    assert_eq!(
        state["{cluster=\"a\"}"].replicas.keys().collect::<Vec<_>>(),
        ["replica=\"a-0\"", "replica=\"a-1\""]
    );
    let one = inventory(vec![sidecar("a", "a-0", T0)]);
    c.expect(&state, &one);
    let v = c.verdict(&[T0 + 5 * H], H, Some(one.clone()));
    assert_eq!((v.complete, v.refused.is_none()), (1, true));
    assert_eq!(told(&c), ["replica {cluster=\"a\"}"]);
    c.verdict(&[T0 + 5 * H], H, Some(one));
    assert_eq!(told(&c).len(), 1, "once per run");
}

#[test]
fn a_source_absent_longer_than_the_grace_no_longer_blocks_and_is_expected_when_back() {
    // b served until 00:00 and is gone from every store: 6 h 10 m ago
    let gone = inventory(vec![
        sidecar("a", "", T0 - 24 * H),
        sidecar("b", "", T0 - 24 * H),
    ]);
    let now = inventory(vec![sidecar("a", "", T0 - 24 * H)]);
    for (grace, blocked) in [(Some(7), true), (Some(5), false), (None, true)] {
        let mut c = guard(grace);
        let state = remembered(&gone, T0);
        c.expect(&state, &now);
        let v = c.verdict(&[T0 + 5 * H], H, Some(now.clone()));
        assert_eq!(v.refused.is_some(), blocked, "grace {grace:?}");
        if !blocked {
            assert_eq!(told(&c), ["absent cluster b ({cluster=\"b\"})"]);
        }
    }
    // back after 7 h: the windows of its absence go without it, the next ones expect it
    let mut c = guard(Some(6));
    let state = remembered(&gone, T0 - H);
    let back = inventory(vec![
        sidecar("a", "", T0 - 24 * H),
        sidecar("b", "", T0 + 6 * H),
    ]);
    c.expect(&state, &back);
    let v = c.verdict(&[T0 + 5 * H, T0 + 6 * H], H, Some(back.clone()));
    assert_eq!(v.complete, 2, "05:00 in the long absence, 06:00 served");
    // served when the run starts, lost before the window: refused
    let mut c = guard(Some(6));
    c.expect(&BTreeMap::new(), &back);
    let lost = inventory(vec![sidecar("a", "", T0 - 24 * H)]);
    let v = c.verdict(&[T0 + 6 * H], H, Some(lost));
    assert!(v.refused.is_some());
}

#[test]
fn a_short_gap_in_a_sources_data_blocks_until_the_grace_has_passed_after_the_window() {
    // b's Prometheus restarted empty at 05:00 after serving until 04:00: 04:00 has no data
    let state = remembered(&inventory(vec![sidecar("b", "", T0)]), T0 + 4 * H);
    let back = inventory(vec![sidecar("b", "", T0 + 5 * H)]);
    let mut c = guard(Some(6));
    c.expect(&state, &back);
    let v = c.verdict(&[T0 + 4 * H], H, Some(back.clone()));
    let why = v.refused.expect("refused").to_string();
    assert!(
        why.contains("its data resumes at 2025-11-01T05:00:00Z"),
        "{why}"
    );
    // six hours after the window ended, its data is taken not to exist
    c.now = T0 + 11 * H + 1;
    let v = c.verdict(&[T0 + 4 * H], H, Some(back));
    assert!(v.refused.is_none());
}

#[test]
fn a_source_is_expected_from_its_first_data_and_only_by_the_shard_of_its_cluster() {
    let mut c = guard(Some(6));
    let young = inventory(vec![sidecar("a", "", T0 + 2 * H + 1800)]);
    c.expect(&BTreeMap::new(), &young);
    // its data begins inside 02:00: that window is covered from there on, 01:00 expects nothing
    let v = c.verdict(&[T0 + H, T0 + 2 * H, T0 + 3 * H], H, Some(young));
    assert_eq!(v.complete, 3);
    // a source of a cluster another shard owns is not this shard's concern
    let shard = Shard::parse("0/2").unwrap();
    let theirs = ["a", "b", "c", "d"]
        .into_iter()
        .find(|c| !shard.owns(c))
        .unwrap();
    let mut c = guard(Some(6));
    c.shard = Some(shard);
    let both = inventory(vec![sidecar(theirs, "", T0)]);
    c.expect(&BTreeMap::new(), &both);
    let v = c.verdict(&[T0 + H], H, Some(inventory(vec![])));
    assert!(v.refused.is_none(), "{theirs} is another shard's");
}

#[test]
fn only_sources_whose_clusters_had_data_are_remembered() {
    let c = guard(Some(6));
    let inv = inventory(vec![
        sidecar("a", "a-0", T0),
        sidecar("z", "", T0),
        Served {
            labels: labels(&[("tenant_id", "t")]),
            replica: String::new(),
            min_time: T0 * 1000,
            max_time: i64::MAX,
        },
        // a gateway's block that ends before the window
        served("b", "", T0 - 24 * H, T0),
    ]);
    let mut sources = BTreeMap::new();
    let seen: BTreeSet<String> = ["a", "b"].map(String::from).into();
    c.remember(&mut sources, &inv, (T0 + H, H), &seen);
    assert_eq!(
        sources.keys().collect::<Vec<_>>(),
        ["{cluster=\"a\"}", "{tenant_id=\"t\"}"],
        "z had no series, b's store does not reach the window, a source without the cluster label may hold any"
    );
    let a = &sources["{cluster=\"a\"}"];
    assert_eq!((a.first_ms, a.last), (T0 * 1000, T0 + 2 * H));
    // a month after its grace, a source is forgotten
    assert_eq!(a.live_at, NOW, "served live by this run");
    let mut old = sources.clone();
    let a = old.get_mut("{cluster=\"a\"}").unwrap();
    (a.last, a.live_at) = (NOW - 31 * 86_400, NOW - 31 * 86_400);
    c.remember(&mut old, &Inventory::default(), (T0 + H, H), &seen);
    assert!(!old.contains_key("{cluster=\"a\"}"));
}
