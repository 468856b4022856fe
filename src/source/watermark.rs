//! How far each cluster's data has arrived in the stores: the newest sample of a metric every
//! cluster has (`WATERMARK_METRIC`, default `kube_node_info`), per cluster, and how many of its
//! samples each window holds (what tells, on a later run, that late data changed a window).
//!
//! In remote-write topologies (Receive, Mimir, agents, a Collector) a store can be healthy while
//! a cluster's samples have not reached it yet: its Info answer says nothing of it (Receive
//! announces `MaxInt64` as every tenant's max time). The samples themselves do. One Series
//! request (or one range-vector query over HTTP) over the tail asks it: a handful of series per
//! cluster, its nodes'.

use std::collections::BTreeMap;

use super::grpc::SeriesClient;
use super::http::HttpSource;
use super::{SourceError, Stats};
use crate::chunk::XorIter;
use crate::model::{Labels, is_stale};
use crate::store::proto::{SeriesRequest, chunk::Encoding, label_matcher};

/// What the stores hold of one cluster's watermark metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMark {
    /// The newest sample time, milliseconds.
    pub newest_ms: i64,
    /// The typical time between two samples of one series (the scrape interval), milliseconds,
    /// when a series had two. Replicas of an HA pair are asked apart, so that their samples do
    /// not interleave into a shorter one.
    pub interval_ms: Option<i64>,
    /// Distinct samples (series and timestamp) per window start (seconds) in the range asked:
    /// a window's count grows when late data reaches it.
    pub samples: BTreeMap<i64, u64>,
}

/// Every cluster's mark, by cluster folder (series without the cluster label under the
/// default cluster, as their files are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks {
    pub clusters: BTreeMap<String, ClusterMark>,
    pub stats: Stats,
}

/// What to ask and how to read the answer.
#[derive(Debug, Clone)]
pub struct WatermarkQuery {
    /// The metric every cluster has.
    pub metric: String,
    pub cluster_label: String,
    /// The folder of series without the cluster label (CLUSTER_NAME).
    pub default_cluster: String,
    /// Window length, seconds: samples are counted per window.
    pub time_frame: i64,
}

/// Per-series gaps: their median is a series' interval, and a cluster's interval is the
/// largest of its series' (a series scraped slower than the rest must not look late).
#[derive(Default)]
struct Intervals(BTreeMap<String, Vec<i64>>);

impl Watermarks {
    /// Adds one series' sample times (milliseconds, any order, duplicates allowed: chunks of
    /// several stores overlap) within `[from_ms, to_ms]`.
    fn add_series(
        &mut self,
        q: &WatermarkQuery,
        labels: &Labels,
        times: &mut Vec<i64>,
        (from_ms, to_ms): (i64, i64),
        intervals: &mut Intervals,
    ) {
        times.retain(|&t| (from_ms..=to_ms).contains(&t));
        times.sort_unstable();
        times.dedup();
        let Some(&newest) = times.last() else {
            return;
        };
        let cluster = match labels.get(&q.cluster_label) {
            "" => q.default_cluster.as_str(),
            c => c,
        };
        let mark = self.clusters.entry(cluster.to_string()).or_default();
        mark.newest_ms = mark.newest_ms.max(newest);
        let tf = q.time_frame * 1000;
        for &t in times.iter() {
            *mark
                .samples
                .entry(t.div_euclid(tf) * q.time_frame)
                .or_default() += 1;
        }
        if times.len() > 1 {
            let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
            let mid = gaps.len() / 2;
            let (_, median, _) = gaps.select_nth_unstable(mid);
            intervals
                .0
                .entry(cluster.to_string())
                .or_default()
                .push(*median);
        }
    }

    fn finish(mut self, intervals: Intervals) -> Self {
        for (cluster, medians) in intervals.0 {
            if let Some(mark) = self.clusters.get_mut(&cluster) {
                mark.interval_ms = medians.into_iter().max();
            }
        }
        self
    }
}

/// The marks from a StoreAPI endpoint or remote read: one Series request for the metric over
/// `[from_ms, to_ms]`, every chunk's sample times read (values are not needed; staleness
/// markers are not samples).
pub async fn from_series(
    client: &SeriesClient,
    q: &WatermarkQuery,
    (from_ms, to_ms): (i64, i64),
) -> Result<Watermarks, SourceError> {
    let req = SeriesRequest {
        min_time: from_ms,
        max_time: to_ms,
        matchers: vec![crate::store::matcher(
            label_matcher::Type::Eq,
            crate::model::METRIC_NAME,
            &q.metric,
        )],
        ..Default::default()
    };
    let mut stream = client.series(req).await?;
    let mut marks = Watermarks::default();
    let mut intervals = Intervals::default();
    let mut times = Vec::new();
    while let Some(series) = stream.next().await? {
        times.clear();
        let labels = super::series_labels(&series.labels, &[])?;
        for chunk in series.chunks.iter().filter_map(|c| c.raw.as_ref()) {
            if chunk.r#type != Encoding::Xor as i32 {
                continue; // a histogram is no float watermark metric; its times are not read
            }
            let mut it = XorIter::new(&chunk.data).map_err(|e| data_error(&labels, e))?;
            while let Some((t, v)) = it.next_sample().map_err(|e| data_error(&labels, e))? {
                if !is_stale(v) {
                    times.push(t);
                }
            }
        }
        marks.stats.series += 1;
        marks.stats.samples += times.len() as u64;
        marks.add_series(q, &labels, &mut times, (from_ms, to_ms), &mut intervals);
    }
    marks.stats.bytes_in = stream.bytes_received();
    marks.stats.calls = 1;
    Ok(marks.finish(intervals))
}

fn data_error(labels: &Labels, e: crate::chunk::ChunkError) -> SourceError {
    SourceError::Data {
        series: labels.to_string(),
        source: crate::dedup::SeriesDataError::Chunk(e),
    }
}

/// The longest span one HTTP query asks: a first run's days of a large fleet's nodes in one
/// answer would pass the API's sample limit (Thanos' --query.max-samples, 50 million).
const HTTP_SPAN_MS: i64 = 6 * 3600 * 1000;

/// The marks from the HTTP API: the metric's raw samples over `[from_ms, to_ms]` as range
/// vectors (instant queries, the replicas apart), `HTTP_SPAN_MS` at a time.
pub async fn from_http(
    http: &HttpSource,
    q: &WatermarkQuery,
    (from_ms, to_ms): (i64, i64),
) -> Result<Watermarks, SourceError> {
    let mut marks = Watermarks::default();
    let mut intervals = Intervals::default();
    let mut lo = from_ms;
    while lo <= to_ms {
        let hi = (lo + HTTP_SPAN_MS - 1).min(to_ms);
        // `[r]` at hi selects (hi - r, hi]: exactly [lo, hi]; an engine that closes ranges on
        // the left adds a sample at lo - 1, which `add_series` drops, as it drops nothing twice
        let expr = format!("{}[{}ms]", q.metric, hi - lo + 1);
        let (series, stats) = http.raw_samples(&expr, hi).await?;
        marks.stats += stats;
        for (labels, mut times) in series {
            marks.add_series(q, &labels, &mut times, (lo, hi), &mut intervals);
        }
        lo = hi + 1;
    }
    Ok(marks.finish(intervals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> WatermarkQuery {
        WatermarkQuery {
            metric: "kube_node_info".into(),
            cluster_label: "cluster".into(),
            default_cluster: "home".into(),
            time_frame: 60,
        }
    }

    #[test]
    fn each_cluster_gets_its_newest_sample_its_interval_and_samples_per_window() {
        let q = query();
        let mut marks = Watermarks::default();
        let mut intervals = Intervals::default();
        let a = Labels::from_pairs([("cluster", "a"), ("node", "n1")]);
        // two stores' overlapping chunks: 30 s apart, the duplicates counted once
        let mut times = vec![0, 30_000, 60_000, 30_000, 60_000, 90_000, 120_000];
        marks.add_series(&q, &a, &mut times, (0, 200_000), &mut intervals);
        let b = Labels::from_pairs([("node", "n2")]);
        let mut times = vec![125_000, 5_000, 65_000];
        marks.add_series(&q, &b, &mut times, (0, 100_000), &mut intervals);
        // a series with nothing in range adds no cluster
        let c = Labels::from_pairs([("cluster", "c")]);
        marks.add_series(&q, &c, &mut vec![500_000], (0, 200_000), &mut intervals);
        let marks = marks.finish(intervals);
        assert_eq!(marks.clusters.len(), 2, "{marks:?}");
        let a = &marks.clusters["a"];
        assert_eq!(a.newest_ms, 120_000);
        assert_eq!(a.interval_ms, Some(30_000));
        assert_eq!(
            a.samples,
            BTreeMap::from([(0, 2), (60, 2), (120, 1)]),
            "per window start"
        );
        let home = &marks.clusters["home"];
        assert_eq!((home.newest_ms, home.interval_ms), (65_000, Some(60_000)));
        assert_eq!(home.samples, BTreeMap::from([(0, 1), (60, 1)]));
    }

    #[test]
    fn a_cluster_s_interval_is_its_slowest_series() {
        let q = query();
        let mut marks = Watermarks::default();
        let mut intervals = Intervals::default();
        for (node, step) in [("n1", 15_000), ("n2", 60_000)] {
            let l = Labels::from_pairs([("cluster", "a"), ("node", node)]);
            let mut times: Vec<i64> = (0..10).map(|k| k * step).collect();
            marks.add_series(&q, &l, &mut times, (0, 1_000_000), &mut intervals);
        }
        let marks = marks.finish(intervals);
        assert_eq!(marks.clusters["a"].interval_ms, Some(60_000));
        assert_eq!(marks.clusters["a"].newest_ms, 540_000);
    }
}
