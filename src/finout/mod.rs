//! Finout's layout and file format: one gzip-compressed `query_range` JSON body per
//! (cluster, metric, window), under
//! `<prefix>/<cluster>/end=<YYYYMMDD>/day=<D>/metric=<metric>/<T>_<metric>.json.gz`; and the
//! daily telemetry CSV files (`telemetry`).

pub mod layout;
pub mod telemetry;

pub use layout::{cluster_folder, object_key};

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::model::{Series, Steps, WindowResult};
use crate::query_range::render;
use crate::shard::Shard;

/// The file of one (cluster, metric, window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Object key (or path below the output directory).
    pub key: String,
    /// The cluster folder the key is in.
    pub cluster: String,
    /// The gzip-compressed body.
    pub body: Vec<u8>,
    /// Series in the file.
    pub series: usize,
}

/// Gzip with a fixed header (no name, mtime 0), so equal bodies give equal bytes.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    enc.write_all(body).expect("writing to memory cannot fail");
    enc.finish().expect("writing to memory cannot fail")
}

/// Splits a window's results by cluster and renders every file. Every cluster seen in the
/// window gets a file for every metric (an empty result where it has no series), so a
/// missing file always means a window not exported, never "no data". With a shard, only the
/// clusters it owns are written.
pub fn window_files<'a>(
    prefix: &str,
    cluster_label: &str,
    default_cluster: &'a str,
    window_start: i64,
    results: &'a WindowResult,
    steps: &[Steps],
    shard: Option<Shard>,
) -> Vec<OutputFile> {
    let owned = |c: &str| shard.is_none_or(|s| s.owns(c));
    debug_assert_eq!(results.len(), steps.len());
    let cluster_of = |s: &'a Series| -> &'a str {
        match s.labels.get(cluster_label) {
            "" => default_cluster,
            c => c,
        }
    };
    let mut clusters: BTreeSet<&str> = results
        .iter()
        .flat_map(|(_, series)| series.iter().map(cluster_of))
        .collect();
    if clusters.is_empty() {
        clusters.insert(default_cluster);
    }
    clusters.retain(|c| owned(c));
    let mut files = Vec::new();
    for ((metric, series), steps) in results.iter().zip(steps) {
        let mut by_cluster: BTreeMap<&str, Vec<&Series>> =
            clusters.iter().map(|&c| (c, Vec::new())).collect();
        for s in series {
            if let Some(v) = by_cluster.get_mut(cluster_of(s)) {
                v.push(s);
            } else {
                debug_assert!(!owned(cluster_of(s)), "every owned cluster is in the set");
            }
        }
        for (cluster, series) in by_cluster {
            let body = render(series.iter().copied(), steps);
            files.push(OutputFile {
                key: object_key(prefix, cluster, metric, window_start),
                cluster: cluster.to_string(),
                body: gzip(body.as_bytes()),
                series: series.len(),
            });
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    #[test]
    fn gzip_is_deterministic() {
        assert_eq!(gzip(b"hello"), gzip(b"hello"));
        let z = gzip(b"hello");
        let mut d = flate2::read::GzDecoder::new(&z[..]);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut d, &mut s).unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn files_per_cluster_with_empty_results() {
        let steps = Steps {
            start: 0,
            step: 60_000,
            n: 1,
        };
        let a = Series {
            labels: Labels::from_pairs([("cluster", "a")]),
            values: vec![Some(1.0)],
        };
        let nolabel = Series {
            labels: Labels::from_pairs([("node", "n")]),
            values: vec![Some(1.0)],
        };
        let results = vec![
            ("m1".to_string(), vec![a, nolabel]),
            ("m2".to_string(), vec![]),
        ];
        let files = window_files("p", "cluster", "home", 0, &results, &[steps, steps], None);
        assert!(
            files
                .iter()
                .all(|f| f.key.starts_with(&format!("p/{}/", f.cluster)))
        );
        let keys: Vec<_> = files.iter().map(|f| (f.key.as_str(), f.series)).collect();
        assert_eq!(
            keys,
            vec![
                ("p/a/end=19700201/day=1/metric=m1/0_m1.json.gz", 1),
                ("p/home/end=19700201/day=1/metric=m1/0_m1.json.gz", 1),
                ("p/a/end=19700201/day=1/metric=m2/0_m2.json.gz", 0),
                ("p/home/end=19700201/day=1/metric=m2/0_m2.json.gz", 0),
            ]
        );
    }

    #[test]
    fn shards_write_disjoint_files_that_add_up() {
        let steps = Steps {
            start: 0,
            step: 60_000,
            n: 1,
        };
        let series = |c: &str| Series {
            labels: Labels::from_pairs([("cluster", c)]),
            values: vec![Some(1.0)],
        };
        let results = vec![(
            "m".to_string(),
            vec![series("a"), series("b"), series("c"), series("")],
        )];
        let all = window_files("p", "cluster", "home", 0, &results, &[steps], None);
        let mut union = Vec::new();
        for index in 0..3 {
            let shard = Shard { index, count: 3 };
            union.extend(window_files(
                "p",
                "cluster",
                "home",
                0,
                &results,
                &[steps],
                Some(shard),
            ));
        }
        union.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(union, all);
        // no series at all: only the shard owning the default cluster writes its empty files
        let empty = vec![("m".to_string(), vec![])];
        let writers = (0..3)
            .filter(|&index| {
                !window_files(
                    "p",
                    "cluster",
                    "home",
                    0,
                    &empty,
                    &[steps],
                    Some(Shard { index, count: 3 }),
                )
                .is_empty()
            })
            .count();
        assert_eq!(writers, 1);
    }
}
