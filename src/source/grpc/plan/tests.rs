use super::*;
use crate::catalog::Catalog;
use crate::source::grpc::spill::SPILL_BYTES;
use crate::source::window_steps;

#[test]
fn entries_over_one_metric_and_range_share_a_stream() {
    let catalog = Catalog::default_for("cluster");
    let plans = crate::engine::compile(&catalog).unwrap();
    let steps = vec![window_steps(1_761_868_800, 3600, 60); plans.len()];
    let groups = stream_groups(&plans, &steps, 300_000, Some("cluster"));
    let names: Vec<(&str, usize)> = groups
        .iter()
        .map(|g| {
            let m = plans[g.entries[0]].metric_name().unwrap();
            (m, g.entries.len())
        })
        .collect();
    // requests: cpu, memory and gpu; limits: cpu and memory
    assert!(
        names.contains(&("kube_pod_container_resource_requests", 3)),
        "{names:?}"
    );
    assert!(
        names.contains(&("kube_pod_container_resource_limits", 2)),
        "{names:?}"
    );
    assert_eq!(groups.len(), plans.len() - 3);
    let requests = groups
        .iter()
        .find(|g| g.entries.len() == 3)
        .expect("the requests group");
    // only the matchers every entry has: the metric name (resource/unit differ)
    assert_eq!(requests.matchers.len(), 1, "{:?}", requests.matchers);
    // a rate looks back over its range, an instant selector over the lookback
    let rate = groups
        .iter()
        .find(|g| plans[g.entries[0]].metric_name() == Some("container_cpu_usage_seconds_total"))
        .unwrap();
    assert!(rate.per_cluster);
    let ranges: Vec<_> = rate
        .entries
        .iter()
        .map(|&i| plans[i].select_range(&steps[i], 300_000))
        .collect();
    assert_eq!(
        ranges[0],
        (
            1_761_868_800_000 - 300_000 + 1,
            1_761_868_800_000 + 59 * 60_000
        )
    );
    // sizes unknown (a run's first window): one request per group and cluster
    let scopes = Scopes {
        each: vec![Matcher::eq("cluster", "a"), Matcher::eq("cluster", "b")],
        all: None,
    };
    let mut sizes = Sizes::default();
    let all = tasks(&groups, &steps, 6, Some(&scopes), &sizes, REQUEST_POINTS);
    let with = |all: &[Task], g: &Group| -> Vec<usize> {
        all.iter()
            .enumerate()
            .filter(|(_, t)| t.groups.iter().any(|x| std::ptr::eq(*x, g)))
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(with(&all, rate).len(), 2);
    assert!(groups.iter().all(|g| g.per_cluster));
    assert_eq!(all.len(), 2 * groups.len());
    assert!(
        all.iter()
            .all(|t| t.groups.len() == 1 && t.windows.len() == 6)
    );
    assert!(
        all.iter()
            .all(|t| t.scope.is_some() == t.groups[0].per_cluster)
    );

    // sizes known and small (a small tenant): groups over the same range and matchers
    // but the name share a request for all clusters
    for e in 0..plans.len() {
        for key in ["a", "b", ALL_CLUSTERS] {
            sizes.series.insert((e, key.to_string()), 20);
        }
    }
    let small = tasks(&groups, &steps, 6, Some(&scopes), &sizes, REQUEST_POINTS);
    assert!(small.len() <= 5, "{} requests", small.len());
    assert!(small.iter().all(|t| t.scope.is_none()));
    let together = &small[with(&small, requests)[0]];
    assert!(together.groups.len() > 5);
    let matchers = together.matchers().unwrap();
    assert_eq!(matchers.len(), 1, "{matchers:?}");
    assert!(
        matchers[0]
            .value
            .contains("kube_pod_container_resource_requests|")
    );
    // the rate and the memory usage share their pod and container matchers
    let cadvisor = &small[with(&small, rate)[0]];
    let names: Vec<_> = cadvisor
        .groups
        .iter()
        .filter_map(|g| g.metric_name())
        .collect();
    assert_eq!(
        names,
        [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes"
        ]
    );
    // windows per request: as many as the scratch budget holds (in chunk bytes, whatever
    // the output points), one while the size is unknown
    assert_eq!(windows_per_request(SPILL_BYTES, None), 1);
    assert!(
        together
            .groups
            .iter()
            .all(|g| sizes.bytes(g, ALL_CLUSTERS).is_none())
    );
    for &e in &requests.entries {
        for (key, bytes) in [("a", 3 << 20), ("b", 1 << 20)] {
            sizes.bytes.insert((e, key.to_string()), bytes);
        }
    }
    // all clusters, asked alone before: their sum
    assert_eq!(
        sizes.bytes(requests, ALL_CLUSTERS),
        Some(requests.entries.len() as u64 * (4 << 20))
    );
    assert_eq!(
        windows_per_request(SPILL_BYTES, sizes.bytes(requests, "a")),
        (SPILL_BYTES / (requests.entries.len() as u64 * (3 << 20))) as usize
    );

    // one group larger than the budget: asked per cluster, the others still share
    // requests
    let large_series = 3 * REQUEST_POINTS / 60;
    for key in ["a", "b"] {
        sizes
            .series
            .insert((requests.entries[0], key.to_string()), large_series);
    }
    sizes
        .series
        .remove(&(requests.entries[0], ALL_CLUSTERS.to_string()));
    let large = tasks(&groups, &steps, 6, Some(&scopes), &sizes, REQUEST_POINTS);
    let req = with(&large, requests);
    assert_eq!(req.len(), 2, "a request per cluster");
    assert!(req.iter().all(|&i| large[i].groups.len() == 1));
    assert!(large.iter().any(|t| t.groups.len() > 5));
}

#[test]
fn a_request_teaches_series_per_window_and_bytes_shared_by_points() {
    let mut sizes = Sizes::default();
    let outputs = [
        EntryOutput {
            entry: 0,
            series: 30,
            steps: 60,
        },
        EntryOutput {
            entry: 1,
            series: 10,
            steps: 60,
        },
    ];
    // three windows, 4,000 bytes: entry 0 gave three quarters of the points
    sizes.learn("a", &outputs, 4_000, 3);
    assert_eq!(sizes.series[&(0, "a".into())], 10);
    assert_eq!(sizes.series[&(1, "a".into())], 4);
    assert_eq!(sizes.bytes[&(0, "a".into())], 1_000);
    assert_eq!(sizes.bytes[&(1, "a".into())], 334);
    // nothing came back: the bytes are shared evenly
    let none = [0, 1].map(|entry| EntryOutput {
        entry,
        series: 0,
        steps: 60,
    });
    sizes.learn("b", &none, 100, 1);
    assert_eq!(sizes.bytes[&(0, "b".into())], 50);
    assert_eq!(sizes.series[&(1, "b".into())], 0);
}

#[test]
fn clusters_are_scoped_to_the_shard_and_the_default_folder() {
    let scope = |shard| ClusterScope {
        cluster_label: "cluster".into(),
        default_cluster: "home".into(),
        shard,
        only: None,
    };
    let values = ["a", "b", "", "home"].map(String::from);
    let s = Scopes::of(&scope(None), &values).unwrap();
    let each: Vec<String> = s.each.iter().map(ToString::to_string).collect();
    assert_eq!(each.len(), 3, "{each:?}");
    assert_eq!(s.each[0].key(), Matcher::eq("cluster", "a").key());
    // the default folder: its own value or no label at all
    assert!(s.each[2].matches_value(""), "{each:?}");
    assert!(s.each[2].matches_value("home"), "{each:?}");
    assert!(s.all.is_none(), "without a shard every series is asked");
    let shard = crate::shard::Shard::parse("0/2").unwrap();
    let s = Scopes::of(&scope(Some(shard)), &values).unwrap();
    let all = s.all.expect("a shard asks for its own clusters");
    for v in ["a", "b", "home"] {
        assert_eq!(all.matches_value(v), shard.owns(v), "{v}");
    }
    assert_eq!(
        s.each.len(),
        ["a", "b", "home"].iter().filter(|v| shard.owns(v)).count()
    );
    // a correction asks for its clusters only
    let only = ClusterScope {
        only: Some(["b".to_string()].into()),
        ..scope(None)
    };
    let s = Scopes::of(&only, &values).unwrap();
    assert_eq!(s.each.len(), 1);
    assert_eq!(s.each[0].key(), Matcher::eq("cluster", "b").key());
    let all = s.all.expect("only b's series");
    assert!(all.matches_value("b") && !all.matches_value("a") && !all.matches_value(""));
}

#[test]
fn span_covers_every_range() {
    assert_eq!(span([(5, 9), (1, 4), (3, 12)]), (1, 12));
    assert_eq!(span([]), (0, 0));
}
