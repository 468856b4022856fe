//! The catalog evaluated in-process over `thanos.Store/Series`.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;

use super::{Evaluated, SourceError, Stats, catalog_steps, instant_steps, name_results};
use crate::catalog::Catalog;
use crate::dedup::series_samples;
use crate::engine::{Evaluator, Plan};
use crate::model::{Labels, MatchKind, Matcher};
use crate::model::{Series, Steps};
use crate::remote_read::SeriesClient;
use crate::store::proto::{self, AggrChunk, SeriesRequest, label_matcher::Type};

/// Series handed to the evaluation thread at a time: large enough to amortise the hand-over,
/// small enough that decoding a batch stays in the millisecond range.
const BATCH_SERIES: usize = 256;

/// Series per response frame asked of the StoreAPI: the batch size Thanos Query asks its own
/// stores for, so a frame's overhead is paid once per 64 series on the gRPC path as on the
/// HTTP path's fan-out.
const RESPONSE_BATCH_SIZE: i64 = 64;

/// The clusters one shard exports: Series requests are narrowed to them where that cannot
/// change a result.
#[derive(Clone, Debug)]
pub struct ShardScope {
    pub shard: crate::shard::Shard,
    pub cluster_label: String,
    /// Where series without the cluster label go (CLUSTER_NAME).
    pub default_cluster: String,
}

/// Evaluates the catalog from a StoreAPI endpoint.
#[derive(Clone)]
pub struct GrpcSource {
    shard: Option<Arc<ShardScope>>,
    client: SeriesClient,
    catalog: Arc<Catalog>,
    plans: Arc<Vec<Plan>>,
    replica_labels: Arc<Vec<String>>,
    lookback_ms: i64,
    step: i64,
    time_frame: i64,
    concurrency: usize,
}

/// One Series stream: the entries it feeds and the request's time range.
struct Group {
    entries: Vec<usize>,
    matchers: Vec<Matcher>,
    mint: i64,
    maxt: i64,
}

impl GrpcSource {
    /// A source for `plans` (compiled from `catalog`, same order).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: impl Into<SeriesClient>,
        catalog: Arc<Catalog>,
        plans: Arc<Vec<Plan>>,
        replica_labels: Vec<String>,
        lookback_ms: i64,
        step: i64,
        time_frame: i64,
        concurrency: usize,
    ) -> Self {
        debug_assert_eq!(catalog.entries.len(), plans.len());
        GrpcSource {
            shard: None,
            client: client.into(),
            catalog,
            plans,
            replica_labels: Arc::new(replica_labels),
            lookback_ms,
            step,
            time_frame,
            concurrency: concurrency.max(1),
        }
    }

    /// Narrows the Series requests to the clusters of one shard.
    pub fn with_shard(mut self, scope: ShardScope) -> Self {
        self.shard = Some(Arc::new(scope));
        self
    }

    /// The matcher selecting the shard's clusters among those the StoreAPI knows in the
    /// window, and adds it to every group whose entries keep the cluster label. Endpoints
    /// without LabelValues get no narrowing (the output is filtered by cluster either way).
    async fn narrow_to_shard(&self, groups: &mut [Group]) -> Result<(), SourceError> {
        let Some(scope) = &self.shard else {
            return Ok(());
        };
        let (Some(mint), Some(maxt)) = (
            groups.iter().map(|g| g.mint).min(),
            groups.iter().map(|g| g.maxt).max(),
        ) else {
            return Ok(());
        };
        let values = match self
            .client
            .label_values(&scope.cluster_label, mint, maxt)
            .await
        {
            Ok(v) => v,
            Err(crate::store::StoreError::Status {
                code: tonic::Code::Unimplemented,
                ..
            }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let owned: Vec<&str> = values
            .iter()
            .map(String::as_str)
            .filter(|v| !v.is_empty() && scope.shard.owns(v))
            .collect();
        let re = crate::shard::alternatives(&owned, scope.shard.owns(&scope.default_cluster));
        let m = Matcher::regex(&scope.cluster_label, &re, false)
            .map_err(|e| SourceError::Internal(format!("shard regex {re:?}: {e}")))?;
        for g in groups.iter_mut() {
            if g.entries
                .iter()
                .all(|&i| self.plans[i].preserves_label(&scope.cluster_label))
            {
                g.matchers.push(m.clone());
            }
        }
        Ok(())
    }

    /// Evaluates every catalog entry over the window starting at `start` (seconds).
    pub async fn evaluate(&self, start: i64) -> Result<Evaluated, SourceError> {
        let steps = catalog_steps(&self.catalog, start, self.time_frame, self.step);
        self.evaluate_steps(steps).await
    }

    /// Evaluates every catalog entry as an instant query at `t` (seconds).
    pub async fn evaluate_instant(&self, t: i64) -> Result<Evaluated, SourceError> {
        self.evaluate_steps(vec![instant_steps(t); self.plans.len()])
            .await
    }

    async fn evaluate_steps(&self, steps: Vec<Steps>) -> Result<Evaluated, SourceError> {
        let mut groups = stream_groups(&self.plans, &steps, self.lookback_ms);
        self.narrow_to_shard(&mut groups).await?;
        let mut results: Vec<Option<Vec<Series>>> = vec![None; self.plans.len()];
        let mut stats = Stats::default();
        let mut runs = futures::stream::iter(groups.into_iter().map(|g| {
            let steps = steps.clone();
            async move { self.run_group(g, steps).await }
        }))
        .buffer_unordered(self.concurrency);
        while let Some(done) = runs.next().await {
            let (outs, s) = done?;
            stats += s;
            for (i, series) in outs {
                results[i] = Some(series);
            }
        }
        drop(runs);
        let results = name_results(&self.catalog, results)?;
        Ok(Evaluated {
            results,
            steps,
            stats,
        })
    }

    async fn run_group(
        &self,
        group: Group,
        steps: Vec<Steps>,
    ) -> Result<(Vec<(usize, Vec<Series>)>, Stats), SourceError> {
        let req = SeriesRequest {
            min_time: group.mint,
            max_time: group.maxt,
            matchers: group.matchers.iter().map(to_proto).collect(),
            without_replica_labels: self.replica_labels.to_vec(),
            response_batch_size: RESPONSE_BATCH_SIZE,
            ..Default::default()
        };
        let mut stream = self.client.series(req).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<proto::Series>>(2);
        let plans = self.plans.clone();
        let replica_labels = self.replica_labels.clone();
        let lookback = self.lookback_ms;
        let (entries, mint, maxt) = (group.entries, group.mint, group.maxt);
        // Decoding and folding are CPU work: they run on the blocking pool, fed in batches,
        // while this task keeps reading the stream.
        let worker = tokio::task::spawn_blocking(move || {
            let mut evals: Vec<(usize, Evaluator<'_>)> = entries
                .iter()
                .map(|&i| (i, plans[i].evaluator(steps[i], lookback)))
                .collect();
            let mut merger = SeriesMerger::new(&replica_labels);
            let mut stats = Stats::default();
            while let Some(batch) = rx.blocking_recv() {
                for s in batch {
                    if let Some((labels, chunks)) = merger.push(s)? {
                        feed(&plans, &mut evals, &labels, &chunks, mint, maxt, &mut stats)?;
                    }
                }
            }
            if let Some((labels, chunks)) = merger.finish() {
                feed(&plans, &mut evals, &labels, &chunks, mint, maxt, &mut stats)?;
            }
            let outs = evals
                .into_iter()
                .map(|(i, e)| e.finish().map(|r| (i, r)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, SourceError>((outs, stats))
        });
        let received = async {
            let mut batch = Vec::with_capacity(BATCH_SERIES);
            while let Some(s) = stream.next().await? {
                batch.push(s);
                if batch.len() >= BATCH_SERIES && tx.send(std::mem::take(&mut batch)).await.is_err()
                {
                    return Ok(()); // the worker stopped: its error is the one to report
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch).await;
            }
            Ok::<_, SourceError>(())
        }
        .await;
        drop(tx);
        let worked = worker
            .await
            .map_err(|e| SourceError::Internal(format!("evaluation thread failed: {e}")))?;
        received?;
        let (outs, mut stats) = worked?;
        let (_, bytes) = stream.received();
        stats.bytes_in = bytes;
        stats.calls = 1;
        Ok((outs, stats))
    }
}

/// Streams that cover the catalog in one window: entries over the same metric and time
/// range share one stream (requests and limits of CPU and memory cost one stream per
/// metric, not four), asking only for the matchers they all have in common.
fn stream_groups(plans: &[Plan], steps: &[Steps], lookback_ms: i64) -> Vec<Group> {
    let mut by_key: HashMap<(String, i64, i64), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let (mint, maxt) = plan.select_range(&steps[i], lookback_ms);
        // a selector without a fixed metric name gets a stream of its own
        let name = plan
            .metric_name()
            .map_or_else(|| format!("#{i}"), str::to_string);
        match by_key.get(&(name.clone(), mint, maxt)) {
            Some(&g) => {
                let group = &mut groups[g];
                group.entries.push(i);
                let keys: Vec<_> = plan.matchers.iter().map(Matcher::key).collect();
                group.matchers.retain(|m| keys.contains(&m.key()));
            }
            None => {
                by_key.insert((name, mint, maxt), groups.len());
                groups.push(Group {
                    entries: vec![i],
                    matchers: plan.matchers.clone(),
                    mint,
                    maxt,
                });
            }
        }
    }
    groups
}

fn to_proto(m: &Matcher) -> proto::LabelMatcher {
    let kind = match m.kind {
        MatchKind::Eq => Type::Eq,
        MatchKind::Neq => Type::Neq,
        MatchKind::Re(_) => Type::Re,
        MatchKind::Nre(_) => Type::Nre,
    };
    crate::store::matcher(kind, &m.name, &m.value)
}

fn feed(
    plans: &[Plan],
    evals: &mut [(usize, Evaluator<'_>)],
    labels: &Labels,
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
    stats: &mut Stats,
) -> Result<(), SourceError> {
    // one decode per deduplication variant (counter adjustment or not), shared by entries
    let mut decoded: [Option<Vec<crate::model::Sample>>; 2] = [None, None];
    let mut any = false;
    for (i, eval) in evals.iter_mut() {
        let plan = &plans[*i];
        if !plan.matches(labels) {
            continue;
        }
        any = true;
        let slot = &mut decoded[plan.counter_func as usize];
        if slot.is_none() {
            let s = series_samples(chunks, mint, maxt, plan.counter_func).map_err(|source| {
                SourceError::Data {
                    series: labels.to_string(),
                    source,
                }
            })?;
            stats.samples += s.len() as u64;
            *slot = Some(s);
        }
        eval.push(labels, slot.as_deref().unwrap_or_default())?;
    }
    if any {
        stats.series += 1;
    }
    Ok(())
}

/// Joins consecutive series that are equal once replica labels are removed (a store that
/// sent replicas separately), and checks the stream's order.
struct SeriesMerger<'a> {
    replica_labels: &'a [String],
    pending: Option<(Labels, Vec<AggrChunk>, bool)>,
}

impl<'a> SeriesMerger<'a> {
    fn new(replica_labels: &'a [String]) -> Self {
        SeriesMerger {
            replica_labels,
            pending: None,
        }
    }

    fn push(&mut self, s: proto::Series) -> Result<Option<(Labels, Vec<AggrChunk>)>, SourceError> {
        let labels = Labels::from_pairs(
            s.labels
                .into_iter()
                .filter(|l| !self.replica_labels.contains(&l.name))
                .map(|l| (l.name, l.value)),
        );
        match &mut self.pending {
            Some((pl, chunks, merged)) if *pl == labels => {
                chunks.extend(s.chunks);
                *merged = true;
                Ok(None)
            }
            Some((pl, _, _)) if labels < *pl => {
                Err(SourceError::Order(format!("{labels} after {pl}")))
            }
            _ => Ok(self
                .pending
                .replace((labels, s.chunks, false))
                .map(Self::sorted)),
        }
    }

    fn finish(&mut self) -> Option<(Labels, Vec<AggrChunk>)> {
        self.pending.take().map(Self::sorted)
    }

    // as the Querier's proxy orders the chunks of series it merged
    fn sorted(
        (labels, mut chunks, merged): (Labels, Vec<AggrChunk>, bool),
    ) -> (Labels, Vec<AggrChunk>) {
        if merged {
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
        }
        (labels, chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::decode_into;
    use crate::dedup::split_overlapping;
    use crate::model::STALE_NAN_BITS;
    use crate::query_range::format_value;
    use crate::source::window_steps;
    use crate::store::proto::{Chunk, chunk::Encoding};

    fn base64(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|&c| c != b'=') {
            acc = (acc << 6) | val(c) as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    #[test]
    fn recorded_ha_staleness_markers_end_series_like_thanos_query() {
        // Chunks Thanos Query v0.42.4 sent (gRPC Series, replica label dropped) for one pod
        // of a live HA pair that ended: each replica's chunk ends with a staleness marker.
        // Evaluated the way the gRPC source does (decode, dedup, engine), the result must be
        // what the same Querier's PromQL returned: points up to the marker, then nothing.
        let fx: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/stale_ha_chunks.json")).unwrap();
        let catalog = Catalog::default_for("cluster");
        let lookback = fx["lookback_ms"].as_i64().unwrap();
        let (frame, step) = (
            fx["time_frame_seconds"].as_i64().unwrap(),
            fx["step_seconds"].as_i64().unwrap(),
        );
        let mut windows = 0;
        for s in fx["series"].as_array().unwrap() {
            let name = s["entry"].as_str().unwrap();
            let entry = catalog.entries.iter().find(|e| e.name == name).unwrap();
            let plan = Plan::compile(&entry.expr).unwrap();
            let labels = Labels::from_pairs(
                s["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
            );
            assert!(plan.matches(&labels), "{name}: {labels}");
            let chunks: Vec<AggrChunk> = s["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| AggrChunk {
                    min_time: c["min_time"].as_i64().unwrap(),
                    max_time: c["max_time"].as_i64().unwrap(),
                    raw: Some(Chunk {
                        r#type: Encoding::Xor as i32,
                        data: base64(c["data"].as_str().unwrap()).into(),
                        hash: 0,
                    }),
                    ..Default::default()
                })
                .collect();
            // the replicas overlap: this goes through the penalty merge
            assert_eq!(split_overlapping(&chunks).len(), 2, "{name}");
            for c in &chunks {
                let mut raw = Vec::new();
                decode_into(&c.raw.as_ref().unwrap().data, &mut raw).unwrap();
                assert_eq!(raw.last().unwrap().1.to_bits(), STALE_NAN_BITS, "{name}");
            }
            for w in s["windows"].as_array().unwrap() {
                let steps = window_steps(w["start"].as_i64().unwrap(), frame, step);
                let (mint, maxt) = plan.select_range(&steps, lookback);
                assert_eq!(
                    (mint, maxt),
                    (w["mint"].as_i64().unwrap(), w["maxt"].as_i64().unwrap()),
                    "{name}: the range the chunks were recorded for"
                );
                let samples = series_samples(&chunks, mint, maxt, plan.counter_func).unwrap();
                let mut eval = plan.evaluator(steps, lookback);
                eval.push(&labels, &samples).unwrap();
                let out = eval.finish().unwrap();
                let got: Vec<Vec<(i64, String)>> = out
                    .iter()
                    .map(|series| {
                        series
                            .values
                            .iter()
                            .enumerate()
                            .filter_map(|(i, v)| {
                                let mut text = String::new();
                                format_value((*v)?, &mut text);
                                Some((steps.start / 1000 + i as i64 * step, text))
                            })
                            .collect()
                    })
                    .collect();
                let thanos: Vec<(i64, String)> = w["thanos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_i64().unwrap(), p[1].as_str().unwrap().to_string()))
                    .collect();
                let at = format!("{name} window {}", w["start"]);
                assert!(
                    got.iter().flatten().all(|(_, v)| v != "NaN"),
                    "{at}: a staleness marker exported as a value: {got:?}"
                );
                if thanos.is_empty() {
                    assert!(got.is_empty(), "{at}: Thanos returns no series: {got:?}");
                } else {
                    assert_eq!(got.len(), 1, "{at}: one series");
                    assert_eq!(got[0].len(), thanos.len(), "{at}: Thanos' point count");
                    assert_eq!(got[0], thanos, "{at}: Thanos' points");
                }
                windows += 1;
            }
        }
        assert_eq!(windows, 8, "4 entries x 2 windows recorded");
    }

    #[test]
    fn entries_over_one_metric_and_range_share_a_stream() {
        let catalog = Catalog::default_for("cluster");
        let plans = crate::engine::compile(&catalog).unwrap();
        let steps = vec![window_steps(1_761_868_800, 3600, 60); plans.len()];
        let groups = stream_groups(&plans, &steps, 300_000);
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
            .find(|g| {
                plans[g.entries[0]].metric_name() == Some("container_cpu_usage_seconds_total")
            })
            .unwrap();
        assert_eq!(rate.mint, 1_761_868_800_000 - 300_000 + 1);
        assert_eq!(rate.maxt, 1_761_868_800_000 + 59 * 60_000);
    }

    #[test]
    fn replicas_sent_apart_are_joined_and_order_is_checked() {
        let series = |pairs: &[(&str, &str)], t: i64| proto::Series {
            labels: pairs
                .iter()
                .map(|(n, v)| proto::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            chunks: vec![AggrChunk {
                min_time: t,
                max_time: t + 10,
                ..Default::default()
            }],
        };
        let replicas = ["replica".to_string()];
        let mut m = SeriesMerger::new(&replicas);
        assert!(
            m.push(series(&[("pod", "a"), ("replica", "1")], 50))
                .unwrap()
                .is_none()
        );
        // the same series from the other replica: joined, chunks sorted by time
        assert!(
            m.push(series(&[("pod", "a"), ("replica", "0")], 20))
                .unwrap()
                .is_none()
        );
        let (labels, chunks) = m.push(series(&[("pod", "b")], 0)).unwrap().unwrap();
        assert_eq!(labels, Labels::from_pairs([("pod", "a")]));
        assert_eq!(
            chunks.iter().map(|c| c.min_time).collect::<Vec<_>>(),
            vec![20, 50]
        );
        // out of label order: the endpoint did not drop the replica labels
        let err = m.push(series(&[("pod", "a")], 0)).unwrap_err();
        assert!(matches!(err, SourceError::Order(_)), "{err}");
        assert_eq!(m.finish().unwrap().0, Labels::from_pairs([("pod", "b")]));
    }
}
