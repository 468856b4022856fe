//! Sharding across pods: N shards together write exactly the files of one unsharded run, no
//! key twice, each with its own state.

use std::collections::BTreeMap;

use crate::support::exporter::{describe, exporter, files, log_event, scratch};
use crate::support::stack::stack;

fn export(dir: &std::path::Path, extra: &[(&str, &str)]) -> std::process::Output {
    let s = stack();
    let (from, to) = (
        s.data_from.to_string(),
        (s.data_from + 2 * 3600).to_string(),
    );
    let mut env = vec![
        ("STORE_ENDPOINT", s.thanos_grpc.as_str()),
        ("S3_PREFIX", "k8s/prometheus"),
        ("CLUSTER_NAME", "home"),
    ];
    env.extend_from_slice(extra);
    exporter(
        &[
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--output-dir",
            dir.to_str().unwrap(),
        ],
        &env,
    )
}

fn contents(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    files(dir)
        .into_iter()
        .map(|k| {
            let b = std::fs::read(dir.join(&k)).unwrap();
            (k, b)
        })
        .collect()
}

#[test]
fn shards_together_write_exactly_the_unsharded_files_none_twice() {
    let whole_dir = scratch("shard-whole");
    let out = export(&whole_dir, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let whole = contents(&whole_dir);
    let whole_bytes_in = log_event(&out, "export finished").unwrap()["bytes_in"]
        .as_u64()
        .unwrap();
    assert_eq!(whole.len(), 2 * 19 * 2);

    let mut union: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut writers = 0;
    for i in 0..2 {
        let dir = scratch(&format!("shard-{i}"));
        let shard = format!("{i}/2");
        let out = export(&dir, &[("SHARD", &shard)]);
        assert!(out.status.success(), "shard {shard}: {}", describe(&out));
        let part = contents(&dir);
        if !part.is_empty() {
            writers += 1;
            let bytes_in = log_event(&out, "export finished").unwrap()["bytes_in"]
                .as_u64()
                .unwrap();
            assert!(
                bytes_in < whole_bytes_in,
                "shard {shard} asked only for its clusters: {bytes_in} vs {whole_bytes_in} bytes"
            );
        }
        for (k, v) in part {
            assert!(
                union.insert(k.clone(), v).is_none(),
                "{k} written by two shards"
            );
        }
    }
    assert_eq!(writers, 2, "clusters a and b hash to different shards of 2");
    assert_eq!(
        union.keys().collect::<Vec<_>>(),
        whole.keys().collect::<Vec<_>>()
    );
    assert!(union == whole, "the same bytes");
}

#[test]
fn an_indexed_job_pod_takes_its_shard_and_keeps_its_own_state() {
    let s = stack();
    let dir = scratch("shard-job");
    let now = (s.data_from + 3600 + 600).to_string();
    let out = exporter(
        &["run", "--output-dir", dir.to_str().unwrap()],
        &[
            ("STORE_ENDPOINT", &s.thanos_grpc),
            ("S3_PREFIX", "k8s/prometheus"),
            ("CLUSTER_NAME", "home"),
            ("EXPORTER_NOW", &now),
            ("BACKFILL_DAYS", "1h"),
            ("JOB_COMPLETION_INDEX", "2"),
            ("JOB_COMPLETIONS", "3"),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let f = files(&dir);
    assert!(
        f.contains(&"k8s/prometheus/home/storeapi-exporter-state.shard-2-of-3.json".to_string()),
        "{f:?}"
    );
    let out = exporter(
        &["run", "--output-dir", dir.to_str().unwrap()],
        &[
            ("STORE_ENDPOINT", &s.thanos_grpc),
            ("S3_PREFIX", "k8s/prometheus"),
            ("CLUSTER_NAME", "home"),
            ("JOB_COMPLETION_INDEX", "2"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JOB_COMPLETIONS"));
}
