//! Finout's layout and file format: one gzip-compressed `query_range` JSON body per
//! (cluster, metric, window), under
//! `<prefix>/<cluster>/end=<YYYYMMDD>/day=<D>/metric=<metric>/<T>_<metric>.json.gz`; and the
//! daily telemetry CSV files (`telemetry`).

pub mod layout;
pub mod telemetry;

pub use layout::{cluster_folder, object_key};

use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
use crate::model::WindowResult;
use crate::model::{Series, Steps};
use crate::query_range::gzip::Gzip;
use crate::query_range::render_to;
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

/// The gzip-compressed `query_range` body of `series`, rendered and compressed as a stream:
/// only the compressed bytes and a window of text are ever held. The compressed bytes depend
/// only on the series: equal results, equal files.
pub fn render_gzip<'a>(series: impl Iterator<Item = &'a Series>, steps: &Steps) -> Vec<u8> {
    let mut gz = Gzip::new();
    render_to(series, steps, &mut gz);
    gz.finish()
}

/// Where a window's series go: the cluster folders, and which of them this exporter writes.
#[derive(Debug, Clone)]
pub struct Layout {
    pub prefix: String,
    pub cluster_label: String,
    /// The folder of series without the cluster label (CLUSTER_NAME).
    pub default_cluster: String,
    /// This pod's shard: only the clusters it owns are written.
    pub shard: Option<Shard>,
    /// Only these clusters are written (a correction of late data); `None`: every one.
    pub only: Option<BTreeSet<String>>,
}

impl Layout {
    /// The cluster folder of a series.
    pub fn cluster_of<'a>(&'a self, s: &'a Series) -> &'a str {
        match s.labels.get(&self.cluster_label) {
            "" => &self.default_cluster,
            c => c,
        }
    }

    fn owns(&self, cluster: &str) -> bool {
        self.shard.is_none_or(|s| s.owns(cluster))
            && self.only.as_ref().is_none_or(|o| o.contains(cluster))
    }

    /// The files of one metric's series (sorted by labels) in the window starting at
    /// `window`: one per cluster with series that this exporter owns, and every cluster seen.
    pub fn metric_files(
        &self,
        window: i64,
        metric: &str,
        steps: &Steps,
        series: &[Series],
    ) -> (Vec<OutputFile>, BTreeSet<String>) {
        let mut by_cluster: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
        for s in series {
            by_cluster.entry(self.cluster_of(s)).or_default().push(s);
        }
        let seen = by_cluster.keys().map(|c| c.to_string()).collect();
        let files = by_cluster
            .into_iter()
            .filter(|(c, _)| self.owns(c))
            .map(|(cluster, series)| OutputFile {
                key: object_key(&self.prefix, cluster, metric, window),
                cluster: cluster.to_string(),
                body: render_gzip(series.iter().copied(), steps),
                series: series.len(),
            })
            .collect();
        (files, seen)
    }

    /// The file of a metric without series for a cluster.
    pub fn empty_file(&self, window: i64, metric: &str, cluster: &str) -> OutputFile {
        let steps = Steps {
            start: window * 1000,
            step: 1000,
            n: 0,
        };
        OutputFile {
            key: object_key(&self.prefix, cluster, metric, window),
            cluster: cluster.to_string(),
            body: render_gzip(std::iter::empty(), &steps),
            series: 0,
        }
    }
}

/// What of one window was written so far, so that its end writes the files left: every
/// cluster seen in the window gets a file for every metric (an empty result where it has no
/// series), so a missing file always means a window not exported, never "no data".
#[derive(Debug, Default)]
pub struct WindowTally {
    seen: BTreeSet<String>,
    written: BTreeSet<(String, usize)>,
}

impl WindowTally {
    /// Records the clusters whose file of catalog entry `entry` was written and the clusters
    /// its series had.
    pub fn record<'a>(
        &mut self,
        entry: usize,
        written: impl Iterator<Item = &'a str>,
        seen: BTreeSet<String>,
    ) {
        for c in written {
            let new = self.written.insert((c.to_string(), entry));
            debug_assert!(new, "one file per (cluster, metric, window)");
        }
        self.seen.extend(seen);
    }

    /// The clusters whose series the window had.
    pub fn clusters_seen(&self) -> impl Iterator<Item = &String> {
        self.seen.iter()
    }

    /// The clusters with a file written.
    pub fn clusters_written(&self) -> impl Iterator<Item = &str> {
        self.written.iter().map(|(c, _)| c.as_str())
    }

    /// The (cluster, entry) files still to write, empty, once all `entries` were recorded:
    /// for every cluster seen that the layout owns, or for the default cluster when the
    /// window had no series at all.
    pub fn missing(&self, layout: &Layout, entries: usize) -> Vec<(String, usize)> {
        let mut clusters: Vec<&str> = self.seen.iter().map(String::as_str).collect();
        if clusters.is_empty() {
            clusters.push(&layout.default_cluster);
        }
        let mut out = Vec::new();
        for c in clusters.into_iter().filter(|c| layout.owns(c)) {
            for e in 0..entries {
                if !self.written.contains(&(c.to_string(), e)) {
                    out.push((c.to_string(), e));
                }
            }
        }
        out
    }
}

/// Splits a window's results by cluster and renders every file: what the pipeline does as
/// results arrive, in one call, for the tests.
#[cfg(test)]
fn window_files(
    layout: &Layout,
    window_start: i64,
    results: &WindowResult,
    steps: &[Steps],
) -> Vec<OutputFile> {
    debug_assert_eq!(results.len(), steps.len());
    let mut tally = WindowTally::default();
    let mut files = Vec::new();
    for (i, ((metric, series), steps)) in results.iter().zip(steps).enumerate() {
        let (f, seen) = layout.metric_files(window_start, metric, steps, series);
        tally.record(i, f.iter().map(|f| f.cluster.as_str()), seen);
        files.extend(f);
    }
    for (cluster, i) in tally.missing(layout, results.len()) {
        files.push(layout.empty_file(window_start, &results[i].0, &cluster));
    }
    files.sort_by(|a, b| a.key.cmp(&b.key));
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::query_range::render;

    fn layout(shard: Option<Shard>) -> Layout {
        Layout {
            prefix: "p".into(),
            cluster_label: "cluster".into(),
            default_cluster: "home".into(),
            shard,
            only: None,
        }
    }

    #[test]
    fn streamed_gzip_is_the_rendered_body_compressed() {
        let steps = Steps {
            start: 60_000,
            step: 60_000,
            n: 3,
        };
        let series: Vec<Series> = (0..10_000)
            .map(|i| Series {
                labels: Labels::from_pairs([("pod", format!("p{i:05}"))]),
                values: vec![Some(i as f64 / 7.0), None, Some(f64::NAN)],
            })
            .collect();
        let gunzip = |z: &[u8]| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(z), &mut s).unwrap();
            s
        };
        // the body is larger than the buffer, so it reaches the compressor in pieces
        let body = render(series.iter(), &steps);
        assert!(
            body.len() > 2 * crate::query_range::WRITE_AT,
            "{}",
            body.len()
        );
        let streamed = render_gzip(series.iter(), &steps);
        assert_eq!(gunzip(&streamed), body);
        assert_eq!(
            streamed,
            render_gzip(series.iter(), &steps),
            "deterministic"
        );
        let empty = Layout::empty_file(&layout(None), 60, "m", "home");
        assert_eq!(gunzip(&empty.body), render([].iter(), &steps));
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
        let files = window_files(&layout(None), 0, &results, &[steps, steps]);
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
                ("p/a/end=19700201/day=1/metric=m2/0_m2.json.gz", 0),
                ("p/home/end=19700201/day=1/metric=m1/0_m1.json.gz", 1),
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
        let all = window_files(&layout(None), 0, &results, &[steps]);
        let mut union = Vec::new();
        for index in 0..3 {
            let shard = Shard { index, count: 3 };
            union.extend(window_files(&layout(Some(shard)), 0, &results, &[steps]));
        }
        union.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(union, all);
        // no series at all: only the shard owning the default cluster writes its empty files
        let empty = vec![("m".to_string(), vec![])];
        let writers = (0..3)
            .filter(|&index| {
                !window_files(
                    &layout(Some(Shard { index, count: 3 })),
                    0,
                    &empty,
                    &[steps],
                )
                .is_empty()
            })
            .count();
        assert_eq!(writers, 1);
    }
}
