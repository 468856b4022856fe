//! One request's series folded into its entries' evaluators: the replicas of a series joined
//! (`SeriesMerger`), its chunks decoded and deduplicated as Thanos Query does
//! (`dedup::series_samples`), and pushed into every evaluator whose selector matches it
//! (`push_series`); or, for a request over several windows, cut into what each window reads
//! and set aside (`set_aside`) to be replayed window by window.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::dedup::{
    Reading, Scratch, crosses_a_range, cut_to_each, prometheus_samples_into, series_samples_into,
    split_overlapping, trimmed_at_the_end, trimmed_to,
};
use crate::engine::{Evaluator, Plan};
use crate::model::{Labels, Series, Steps};
use crate::source::{SourceError, Stats, series_labels};
use crate::store::proto::{self, AggrChunk};

/// What the task reading a request's stream hands to the evaluation thread.
pub(super) enum Feed {
    /// The next series, in stream order.
    Series(Vec<proto::Series>),
    /// The stream ended cleanly. A feed that closes without it was cut (the stream failed, and
    /// its error is the one to report): nothing is evaluated from it.
    End,
}

/// The evaluators of a request's entries in one window, and what building them takes.
pub(super) struct EntryEvaluators<'a> {
    pub plans: &'a [Plan],
    pub entries: &'a [usize],
    pub lookback: i64,
}

impl<'a> EntryEvaluators<'a> {
    /// The entries' evaluators over their steps in a window (`steps`, in entry order).
    pub fn start(&self, steps: &[Steps]) -> Vec<(usize, Evaluator<'a>)> {
        debug_assert_eq!(steps.len(), self.entries.len());
        self.entries
            .iter()
            .zip(steps)
            .map(|(&i, &s)| (i, self.plans[i].evaluator(s, self.lookback)))
            .collect()
    }

    /// Each entry's result: `(entry, series)`.
    pub fn finish(
        evals: Vec<(usize, Evaluator<'a>)>,
    ) -> Result<Vec<(usize, Vec<Series>)>, SourceError> {
        evals
            .into_iter()
            .map(|(i, e)| Ok((i, e.finish()?)))
            .collect()
    }
}

/// The merged series of a request, from the batches the reading task hands over.
pub(super) struct Merged<'a> {
    feed: mpsc::Receiver<Feed>,
    merger: SeriesMerger<'a>,
    ready: VecDeque<(Labels, Vec<AggrChunk>)>,
    done: bool,
}

impl<'a> Merged<'a> {
    pub fn new(feed: mpsc::Receiver<Feed>, replica_labels: &'a [String]) -> Self {
        Merged {
            feed,
            merger: SeriesMerger::new(replica_labels),
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// The next series, blocking for the next batch (call it on the blocking pool).
    pub fn next(&mut self) -> Result<Option<(Labels, Vec<AggrChunk>)>, SourceError> {
        loop {
            if let Some(s) = self.ready.pop_front() {
                return Ok(Some(s));
            }
            if self.done {
                return Ok(None);
            }
            match self.feed.blocking_recv() {
                Some(Feed::Series(batch)) => {
                    for s in batch {
                        if let Some(m) = self.merger.push(s)? {
                            self.ready.push_back(m);
                        }
                    }
                }
                Some(Feed::End) => {
                    self.done = true;
                    self.ready.extend(self.merger.finish());
                }
                None => return Err(SourceError::Internal("the series stream was cut".into())),
            }
        }
    }
}

/// A series' samples, one buffer per way of reading it (Thanos' counter adjustment or not,
/// or Prometheus'), kept with their scratch from series to series.
#[derive(Default)]
pub(super) struct Decoded {
    scratch: Scratch,
    ways: [Vec<crate::model::Sample>; 3],
    // whether each evaluator reads the series
    readers: Vec<bool>,
}

/// Folds one series into a window's evaluators; `range`: what the window selects.
pub(super) fn push_series(
    plans: &[Plan],
    evals: &mut [(usize, Evaluator<'_>)],
    range: (i64, i64),
    (labels, chunks): (&Labels, &[AggrChunk]),
    decoded: &mut Decoded,
    stats: &mut Stats,
) -> Result<(), SourceError> {
    let data = |source| SourceError::Data {
        series: labels.to_string(),
        source,
    };
    // the one place the semantics part: how a series' chunks become samples
    let way_of = |plan: &Plan| match (plan.semantics.thanos_reading(), plan.counter_func) {
        (true, counter) => (usize::from(counter), Some(counter)),
        (false, _) => (2, None),
    };
    // the entries reading the series, and per way of reading the first step when they all
    // read it through instant selectors (what it need not decode, `series_samples_into`)
    let readers = &mut decoded.readers;
    readers.clear();
    let mut instant_from = [Some(i64::MAX); 3];
    for (i, eval) in evals.iter() {
        let plan = &plans[*i];
        let reads = plan.matches(labels);
        readers.push(reads);
        if reads {
            let from = &mut instant_from[way_of(plan).0];
            *from = from.zip(eval.instant_from()).map(|(a, b)| a.min(b));
        }
    }
    if !readers.contains(&true) {
        return Ok(());
    }
    stats.series += 1;
    // one decode per way of reading, shared by entries
    let mut read = [false; 3];
    for (k, (i, eval)) in evals.iter_mut().enumerate() {
        if !decoded.readers[k] {
            continue;
        }
        let plan = &plans[*i];
        let (way, thanos) = way_of(plan);
        let samples = &mut decoded.ways[way];
        if !read[way] {
            let scratch = &mut decoded.scratch;
            let from = instant_from[way];
            match thanos {
                Some(counter) => {
                    let reading = Reading {
                        counter,
                        first_sample_switches: plan.semantics.first_sample_switches(),
                    };
                    series_samples_into(chunks, range, reading, from, scratch, samples)
                }
                None => prometheus_samples_into(chunks, range, from, scratch, samples),
            }
            .map_err(data)?;
            stats.samples += samples.len() as u64;
            read[way] = true;
        }
        eval.push(labels, samples)?;
    }
    Ok(())
}

/// `(window, chunks)`: a series' chunks as each window reads them.
pub(super) type WindowChunks = Vec<(usize, Vec<AggrChunk>)>;

/// What a series set aside shows of how its store cuts a request's edge chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Edges {
    /// Its chunks reach the request's end and stop there: the store trimmed them.
    Trimmed,
    /// It was cut for its windows, but stopped inside the request: a store that trims and
    /// one that sends whole chunks (a receiver, a store gateway) send it alike, so only
    /// another series of its cluster can tell which the windows' own requests would get.
    Unknown,
    /// Neither.
    Silent,
}

/// A series of a multi-window request (over `request`), as each window (`ranges`) reads it:
/// `(window, chunks)` for the windows it has chunks in (none when no entry reads it), cut as
/// a request for that window alone gets them wherever the cut matters (see
/// `request`), with what the series shows of its store's cuts; `None` when the cut mattered
/// and a store sent whole chunks.
pub(super) fn set_aside(
    plans: &[Plan],
    entries: &[usize],
    ranges: &[(i64, i64)],
    request: (i64, i64),
    labels: &Labels,
    chunks: &[AggrChunk],
) -> Result<Option<(WindowChunks, Edges)>, SourceError> {
    let trimmed = trimmed_to(chunks, request.0, request.1);
    let shows = trimmed && trimmed_at_the_end(chunks, request.1);
    let read = |i: &usize| plans[*i].matches(labels);
    if !entries.iter().any(read) {
        let edges = if shows { Edges::Trimmed } else { Edges::Silent };
        return Ok(Some((Vec::new(), edges)));
    }
    // A single replica's samples inside a window do not depend on the cut, only Thanos'
    // reading does: a counter's running total and the pseudo-replicas of overlapping chunks.
    let thanos = |i: &usize| plans[*i].semantics.thanos_reading() && read(i);
    let cut = (entries.iter().any(thanos) && split_overlapping(chunks).len() > 1)
        || entries.iter().any(|i| thanos(i) && plans[*i].counter_func);
    if cut && !trimmed {
        return Ok(None);
    }
    let edges = match () {
        _ if shows => Edges::Trimmed,
        _ if cut && crosses_a_range(chunks, ranges) => Edges::Unknown,
        _ => Edges::Silent,
    };
    let each: Vec<Vec<AggrChunk>> = if cut {
        cut_to_each(chunks, ranges).map_err(|source| SourceError::Data {
            series: labels.to_string(),
            source,
        })?
    } else {
        ranges
            .iter()
            .map(|&(mint, maxt)| {
                chunks
                    .iter()
                    .filter(|c| c.max_time >= mint && c.min_time <= maxt)
                    .cloned()
                    .collect()
            })
            .collect()
    };
    let out = each
        .into_iter()
        .enumerate()
        .filter(|(_, own)| !own.is_empty())
        .collect();
    Ok(Some((out, edges)))
}

/// Joins consecutive series that are equal once replica labels are removed (a store that
/// sent replicas separately), and checks the stream's order.
pub(super) struct SeriesMerger<'a> {
    replica_labels: &'a [String],
    pending: Option<(Labels, Vec<AggrChunk>, bool)>,
}

impl<'a> SeriesMerger<'a> {
    pub fn new(replica_labels: &'a [String]) -> Self {
        SeriesMerger {
            replica_labels,
            pending: None,
        }
    }

    pub fn push(
        &mut self,
        s: proto::Series,
    ) -> Result<Option<(Labels, Vec<AggrChunk>)>, SourceError> {
        let labels = series_labels(&s.labels, self.replica_labels)?;
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

    pub fn finish(&mut self) -> Option<(Labels, Vec<AggrChunk>)> {
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
    use crate::catalog::Catalog;
    use crate::chunk::decode_into;
    use crate::dedup::series_samples;
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
            serde_json::from_str(include_str!("../../../tests/data/stale_ha_chunks.json")).unwrap();
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
                let data = &c.raw.as_ref().unwrap().data;
                decode_into(data, &mut raw).unwrap();
                assert_eq!(raw.last().unwrap().1.to_bits(), STALE_NAN_BITS, "{name}");
                // the encoder that re-encodes edge chunks writes Prometheus' appender's bytes
                assert_eq!(crate::chunk::encode(&raw), data.to_vec(), "{name}");
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
    fn a_series_is_set_aside_with_what_each_window_reads() {
        // one replica of a gauge and of a counter, 2 h in 30 min chunks, asked as one request
        // over two 1 h windows: the gauge keeps its chunks as sent (the window's samples do not
        // depend on the cut), the counter gets each window's own cut (its running total does),
        // and both give the samples of a request for that window alone
        let catalog = Catalog::default_for("cluster");
        let plans: Vec<Plan> = catalog
            .entries
            .iter()
            .map(|e| Plan::compile(&e.expr).unwrap())
            .collect();
        let entry = |name: &str| catalog.entries.iter().position(|e| e.name == name).unwrap();
        let (gauge, counter) = (entry("memory_usage"), entry("cpu_usage"));
        let labels = |name: &str| {
            Labels::from_pairs([
                ("__name__", name),
                ("cluster", "a"),
                ("container", "app"),
                ("namespace", "ns"),
                ("pod", "p"),
            ])
        };
        let samples: Vec<crate::model::Sample> = (0..480)
            .map(|i| (1_000 + i * 15_000, 10.0 + (i % 100) as f64))
            .collect();
        let chunks: Vec<AggrChunk> = samples
            .chunks(120)
            .filter_map(crate::chunk::xor_chunk)
            .collect();
        let ranges = [(1, 3_600_000), (3_300_001, 7_200_000)];
        let request = (1, 7_200_000);
        for (name, i, is_counter) in [
            ("container_memory_working_set_bytes", gauge, false),
            ("container_cpu_usage_seconds_total", counter, true),
        ] {
            let l = labels(name);
            assert!(plans[i].matches(&l) && plans[i].counter_func == is_counter);
            let (set, edges) = set_aside(&plans, &[gauge, counter], &ranges, request, &l, &chunks)
                .unwrap()
                .unwrap();
            // its first sample is 1 s after the request's start: trimmed there
            assert_eq!(edges, Edges::Trimmed, "{name}");
            assert_eq!(set.len(), 2, "{name}: both windows");
            for (k, own) in set {
                let (mint, maxt) = ranges[k];
                let alone = crate::dedup::cut_to(&chunks, mint, maxt).unwrap();
                if is_counter {
                    assert_eq!(own, alone, "{name} window {k}: the window's own cut");
                } else {
                    assert!(own.iter().all(|c| chunks.contains(c)), "{name}: as sent");
                }
                let want = series_samples(&alone, mint, maxt, is_counter).unwrap();
                let got = series_samples(&own, mint, maxt, is_counter).unwrap();
                assert!(!want.is_empty());
                let bits = |s: &[crate::model::Sample]| -> Vec<(i64, u64)> {
                    s.iter().map(|x| (x.0, x.1.to_bits())).collect()
                };
                assert_eq!(bits(&got), bits(&want), "{name} window {k}");
            }
        }
        // the same series inside a longer request, an hour from both edges: what a store
        // sends for it does not show whether it trims, and the counter's cut changed its
        // chunks (one spans the second window's start)
        let wide = (-3_600_000, 10_800_000);
        for (name, want) in [
            ("container_memory_working_set_bytes", Edges::Silent),
            ("container_cpu_usage_seconds_total", Edges::Unknown),
        ] {
            let (_, edges) = set_aside(
                &plans,
                &[gauge, counter],
                &ranges,
                wide,
                &labels(name),
                &chunks,
            )
            .unwrap()
            .unwrap();
            assert_eq!(edges, want, "{name}");
        }
        // a series no entry reads is not set aside; a counter's whole chunks (a store
        // gateway's) reaching past the request give the request up
        let other = labels("kube_pod_info");
        let none = set_aside(&plans, &[gauge, counter], &ranges, request, &other, &chunks);
        assert_eq!(none.unwrap(), Some((vec![], Edges::Trimmed)));
        let cpu = labels("container_cpu_usage_seconds_total");
        let narrow = (1_000_000, 7_200_000);
        assert!(
            set_aside(&plans, &[counter], &ranges, narrow, &cpu, &chunks)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn replicas_sent_apart_are_joined_and_order_is_checked() {
        let series = |pairs: &[(&str, &str)], t: i64| proto::Series {
            labels: pairs
                .iter()
                .map(|&(n, v)| crate::store::label(n, v))
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
