//! One request's series folded into its entries' evaluators: the replicas of a series joined
//! (`SeriesMerger`), its chunks decoded and deduplicated as Thanos Query does
//! (`dedup::series_samples`), and pushed into every evaluator whose selector matches it
//! (`push_series`); or, for a request over several windows, cut into what each window reads
//! and set aside (`set_aside`) to be replayed window by window.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::dedup::{
    Reading, Scratch, crosses_a_range, cut_to_each, instant_skip, overlapping,
    prometheus_samples_into, series_samples_into, trimmed_at_the_end, trimmed_to,
};
use crate::engine::{Evaluator, Leaf, Plan};
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

/// Folds one series into a window's evaluators (in entry order); `range`: what the window
/// selects; `readers`: which entries read the series, when it was set aside (else matched).
pub(super) fn push_series(
    plans: &[Plan],
    evals: &mut [(usize, Evaluator<'_>)],
    range: (i64, i64),
    (labels, chunks, known): (&Labels, &[AggrChunk], Option<Readers>),
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
    for (k, (i, eval)) in evals.iter().enumerate() {
        let plan = &plans[*i];
        let reads = match known {
            Some(known) => known.reads(k, plan, labels),
            None => plan.matches(labels),
        };
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

/// The windows of a multi-window request, as `set_aside` cuts for them.
pub(super) struct Windows<'w> {
    /// What each window selects.
    pub ranges: &'w [(i64, i64)],
    /// Each window's first step of each of the request's entries, in entry order.
    pub first_steps: &'w [Vec<i64>],
}

/// Which of a request's entries read a series, bit k for the k-th: matched once when the
/// series is set aside and carried with it to its windows, which do not match it again
/// (`push_series`). An entry past the 64th is matched where it is asked about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Readers(pub u64);

impl Readers {
    /// The entries among the first 64 of `entries` whose selector matches `labels`.
    pub fn of(plans: &[Plan], entries: &[usize], labels: &Labels) -> Readers {
        let bits = entries
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, i)| plans[**i].matches(labels))
            .fold(0, |bits, (k, _)| bits | 1 << k);
        Readers(bits)
    }

    /// Whether the k-th entry, `plan`, reads `labels`.
    pub fn reads(self, k: usize, plan: &Plan, labels: &Labels) -> bool {
        let reads = match k {
            0..64 => self.0 >> k & 1 == 1,
            _ => plan.matches(labels),
        };
        debug_assert_eq!(reads, plan.matches(labels), "entry {k}");
        reads
    }
}

/// What `set_aside` makes of a series of a multi-window request.
#[derive(Debug, PartialEq)]
pub(super) struct SetAside {
    /// The series' chunks as each window reads them.
    pub windows: WindowChunks,
    /// What the series shows of its store's cuts.
    pub edges: Edges,
    /// The entries that read it.
    pub readers: Readers,
}

/// A series of a multi-window request (over `request`), as each window reads it:
/// `(window, chunks)` for the windows it has chunks in (none when no entry reads it), cut as
/// a request for that window alone gets them wherever the cut matters (see
/// `request`), with what the series shows of its store's cuts; `None` when the cut mattered
/// and a store sent whole chunks. A window is given only the chunks its evaluation decodes.
pub(super) fn set_aside(
    plans: &[Plan],
    entries: &[usize],
    windows: &Windows<'_>,
    request: (i64, i64),
    labels: &Labels,
    chunks: &[AggrChunk],
) -> Result<Option<SetAside>, SourceError> {
    let ranges = windows.ranges;
    let trimmed = trimmed_to(chunks, request.0, request.1);
    let shows = trimmed && trimmed_at_the_end(chunks, request.1);
    let readers = Readers::of(plans, entries, labels);
    let read = |k: usize| readers.reads(k, &plans[entries[k]], labels);
    let reading = || {
        (0..entries.len())
            .filter(|&k| read(k))
            .map(|k| &plans[entries[k]])
    };
    if reading().next().is_none() {
        let edges = if shows { Edges::Trimmed } else { Edges::Silent };
        return Ok(Some(SetAside {
            windows: Vec::new(),
            edges,
            readers,
        }));
    }
    // A single replica's samples inside a window do not depend on the cut, only Thanos'
    // reading does: a counter's running total and the pseudo-replicas of overlapping chunks.
    let cut = (reading().any(|p| p.semantics.thanos_reading()) && overlapping(chunks))
        || reading().any(|p| p.semantics.thanos_reading() && p.counter_func);
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
        // read by instant selectors alone, from one step on: a window decodes a replica's
        // chunks only from the one holding that step (`push_series`), so it is given no other
        let instant = reading().all(|p| matches!(p.leaf, Leaf::Instant));
        ranges
            .iter()
            .zip(windows.first_steps)
            .map(|(&(mint, maxt), firsts)| {
                let mut own: Vec<AggrChunk> = chunks
                    .iter()
                    .filter(|c| c.max_time >= mint && c.min_time <= maxt)
                    .cloned()
                    .collect();
                if let Some(at) = common_first_step(instant, firsts, read) {
                    own.drain(..instant_skip(&own, at));
                }
                own
            })
            .collect()
    };
    let windows = each
        .into_iter()
        .enumerate()
        .filter(|(_, own)| !own.is_empty())
        .collect();
    Ok(Some(SetAside {
        windows,
        edges,
        readers,
    }))
}

/// The first step every entry reading a series (`read`, by its position) has in a window
/// (`firsts`, in entry order) when they all read it through instant selectors (`instant`)
/// from the same step.
fn common_first_step(instant: bool, firsts: &[i64], read: impl Fn(usize) -> bool) -> Option<i64> {
    let mut at = firsts.iter().enumerate().filter(|&(k, _)| read(k));
    let (_, &first) = at.next()?;
    (instant && at.all(|(_, &t)| t == first)).then_some(first)
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
mod tests;
