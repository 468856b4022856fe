//! Thanos' penalty merge of HA replicas (`pkg/dedup/iter.go`), reproduced: a tree of
//! pairwise mergers over the pseudo-replicas' samples, with the counter adjustment at each
//! switch between replicas.

use super::Reading;
use crate::chunk::XorIter;
use crate::model::Sample;
use crate::store::proto::AggrChunk;

/// The penalty before the first switch, in milliseconds (Thanos' `initialPenalty`).
const INITIAL_PENALTY: i64 = 5000;

/// Merges replicas' samples with the penalty rule, read as `reading` says (a bool: whether
/// to adjust counters at switches).
pub fn merge(replicas: Vec<Vec<Sample>>, reading: impl Into<Reading>) -> Vec<Sample> {
    let mut out = Vec::new();
    merge_into(&replicas, reading.into(), &mut out);
    out
}

/// `merge` appending to `out`.
pub fn merge_into(replicas: &[Vec<Sample>], reading: Reading, out: &mut Vec<Sample>) {
    let Reading {
        counter,
        first_sample_switches,
    } = reading;
    let mut it = replicas.iter();
    let Some(first) = it.next() else {
        return;
    };
    let mut node = Node::replica(first, counter);
    for r in it {
        let merger = Merger::new(node, Node::replica(r, counter), !first_sample_switches);
        node = Node::Merge(Box::new(merger));
    }
    while node.next() {
        out.push(node.at());
    }
}

/// An iterator in the merge tree, with chunkenc.Iterator's contract: `next` and `seek`
/// report whether there is a current sample; `seek` never moves backwards and leaves the
/// iterator alone when the current sample is already at or after the target.
enum Node<'a> {
    Replica(Replica<'a>),
    Merge(Box<Merger<'a>>),
}

/// One pseudo-replica's samples, read in order.
struct Replica<'a> {
    samples: &'a [Sample],
    // index of the current sample; None before the first `next`
    pos: Option<usize>,
    counter: bool,
    adjust: f64,
}

struct Merger<'a> {
    a: Node<'a>,
    b: Node<'a>,
    a_ok: bool,
    b_ok: bool,
    last_t: i64,
    last_is_a: bool,
    pen_a: i64,
    pen_b: i64,
    use_a: bool,
}

impl<'a> Node<'a> {
    fn replica(samples: &'a [Sample], counter: bool) -> Node<'a> {
        // a counter replica comes from the counter-reset reading, which drops NaN samples
        // (staleness markers included), so its adjustment never touches one
        debug_assert!(!counter || samples.iter().all(|s| !s.1.is_nan()));
        Node::Replica(Replica {
            samples,
            pos: None,
            counter,
            adjust: 0.0,
        })
    }

    fn next(&mut self) -> bool {
        match self {
            Node::Replica(l) => {
                let p = l.pos.map_or(0, |p| p + 1);
                l.pos = Some(p.min(l.samples.len()));
                p < l.samples.len()
            }
            Node::Merge(m) => m.next(),
        }
    }

    fn seek(&mut self, t: i64) -> bool {
        match self {
            Node::Replica(l) => {
                let mut p = l.pos.unwrap_or(0);
                while p < l.samples.len() && l.samples[p].0 < t {
                    p += 1;
                }
                l.pos = Some(p);
                p < l.samples.len()
            }
            Node::Merge(m) => m.seek(t),
        }
    }

    fn at(&self) -> Sample {
        match self {
            Node::Replica(l) => Node::at_replica(l),
            Node::Merge(m) => m.at(),
        }
    }

    fn at_t(&self) -> i64 {
        self.at().0
    }

    fn adjust_at_value(&mut self, last: f64) {
        match self {
            Node::Replica(l) => {
                if l.counter {
                    let (_, v) = Node::at_replica(l);
                    if last > v {
                        l.adjust += last - v;
                    }
                }
            }
            Node::Merge(m) => {
                if m.a_ok {
                    m.a.adjust_at_value(last);
                }
                if m.b_ok {
                    m.b.adjust_at_value(last);
                }
            }
        }
    }

    fn at_replica(l: &Replica) -> Sample {
        let at = l.pos.unwrap_or(0).min(l.samples.len().saturating_sub(1));
        // A replica with no sample in range is read here only by the reading before Thanos
        // v0.35, whose first step takes the first replica's value as the last one taken
        // (a counter's, whose reading dropped its only sample, a staleness marker). This
        // panicked; a Go iterator that never moved gives its zero value, which lifts no
        // counter. Not checked against a v0.34 Querier.
        let Some(&(t, v)) = l.samples.get(at) else {
            return (i64::MIN, 0.0);
        };
        // Only a counter replica is adjusted (Thanos' counterErrAdjustSeriesIterator); any
        // other passes its value through untouched (noopAdjustableSeriesIterator). Even
        // `v + 0.0` would quiet a staleness marker's signalling NaN (0x7ff0000000000002
        // becomes 0x7ff8000000000002), which PromQL then takes for a value: Prometheus'
        // value.IsStaleNaN compares the exact bits.
        if l.counter { (t, v + l.adjust) } else { (t, v) }
    }
}

impl<'a> Merger<'a> {
    /// `use_a`: the replica taken last before the first sample (Thanos' `useA`), which the
    /// first sample switches away from when it is not the same.
    fn new(mut a: Node<'a>, mut b: Node<'a>, use_a: bool) -> Merger<'a> {
        let a_ok = a.next();
        let b_ok = b.next();
        Merger {
            a,
            b,
            a_ok,
            b_ok,
            last_t: i64::MIN,
            last_is_a: true,
            pen_a: 0,
            pen_b: 0,
            use_a,
        }
    }

    fn last(&self) -> &Node<'a> {
        if self.last_is_a { &self.a } else { &self.b }
    }

    fn last_float(&self) -> Option<f64> {
        if (self.use_a && self.a_ok) || (!self.use_a && self.b_ok) {
            Some(self.last().at().1)
        } else {
            None
        }
    }

    fn next(&mut self) -> bool {
        let last_val = self.last_float();
        let last_use_a = self.use_a;
        let ok = self.step();
        if self.use_a != last_use_a
            && let Some(v) = last_val
        {
            if self.a_ok {
                self.a.adjust_at_value(v);
            }
            if self.b_ok {
                self.b.adjust_at_value(v);
            }
        }
        ok
    }

    fn step(&mut self) -> bool {
        // saturating: the first seek targets i64::MIN + 1
        if self.a_ok {
            self.a_ok = self
                .a
                .seek(self.last_t.saturating_add(1).saturating_add(self.pen_a));
        }
        if self.b_ok {
            self.b_ok = self
                .b
                .seek(self.last_t.saturating_add(1).saturating_add(self.pen_b));
        }
        if !self.a_ok {
            self.use_a = false;
            if self.b_ok {
                self.last_t = self.b.at_t();
                self.last_is_a = false;
                self.pen_b = 0;
            }
            return self.b_ok;
        }
        if !self.b_ok {
            self.use_a = true;
            self.last_t = self.a.at_t();
            self.last_is_a = true;
            self.pen_a = 0;
            return true;
        }
        let ta = self.a.at_t();
        let tb = self.b.at_t();
        self.use_a = ta <= tb;
        if self.use_a {
            self.pen_b = if self.last_t != i64::MIN {
                2 * (ta - self.last_t)
            } else {
                INITIAL_PENALTY
            };
            self.pen_a = 0;
            self.last_t = ta;
            self.last_is_a = true;
        } else {
            self.pen_a = if self.last_t != i64::MIN {
                2 * (tb - self.last_t)
            } else {
                INITIAL_PENALTY
            };
            self.pen_b = 0;
            self.last_t = tb;
            self.last_is_a = false;
        }
        true
    }

    fn seek(&mut self, t: i64) -> bool {
        loop {
            let ts = self.at_t();
            if ts >= t {
                return if self.use_a {
                    self.a.seek(ts)
                } else {
                    self.b.seek(ts)
                };
            }
            if !self.next() {
                return false;
            }
        }
    }

    fn at(&self) -> Sample {
        self.last().at()
    }

    fn at_t(&self) -> i64 {
        if self.use_a {
            self.a.at_t()
        } else {
            self.b.at_t()
        }
    }
}

/// The second of two pseudo-replicas, read only as far as the merge of the two needs it:
/// the merge takes nothing from it except across a gap in the first, and most of it need
/// not be decoded at all. A chunk's bounds are its first and last sample's times; a chunk
/// is decoded, sample by sample, only where a time asked falls inside it.
pub(super) struct Second<'a> {
    chunks: &'a [AggrChunk],
    lane: &'a [usize],
    range: (i64, i64),
    // the first chunk of the lane that may end at or after the last time asked, and the
    // samples of that chunk read so far, the last one not before that time
    at: usize,
    reading: Option<(XorIter<'a>, i64)>,
}

impl<'a> Second<'a> {
    pub(super) fn new(chunks: &'a [AggrChunk], lane: &'a [usize], range: (i64, i64)) -> Self {
        Second {
            chunks,
            lane,
            range,
            at: 0,
            reading: None,
        }
    }

    /// Whether the lane may have a sample in range at a time in `[from, to)`: `true` also
    /// when a chunk cannot be read here (merging in full then says what is wrong with it),
    /// or the sample is one the reading skips (a counter's staleness marker). `from` must
    /// not decrease from call to call.
    pub(super) fn has_sample_in(&mut self, from: i64, to: i64) -> bool {
        let (mint, maxt) = self.range;
        let from = from.max(mint);
        let to = to.min(maxt.saturating_add(1));
        if from >= to {
            return false;
        }
        while let Some(&i) = self.lane.get(self.at) {
            let c = &self.chunks[i];
            if c.max_time < from {
                self.at += 1;
                self.reading = None;
                continue;
            }
            if c.min_time >= from {
                return c.min_time < to;
            }
            // `from` falls inside this chunk: its samples tell
            let reading = match &mut self.reading {
                Some(r) => r,
                None => {
                    let raw = c
                        .raw
                        .as_ref()
                        .filter(|r| super::check_xor(r.r#type).is_ok());
                    let Some(iter) = raw.and_then(|r| XorIter::new(&r.data).ok()) else {
                        return true;
                    };
                    self.reading.insert((iter, i64::MIN))
                }
            };
            let (iter, t) = reading;
            while *t < from {
                match iter.next_sample() {
                    Ok(Some((next, _))) => *t = next,
                    Ok(None) => break,
                    Err(_) => return true,
                }
            }
            if *t >= from {
                return *t < to;
            }
            self.at += 1;
            self.reading = None;
        }
        false
    }
}

/// Whether merging two replicas, the first decoded and the second read as far as needed,
/// gives the first's samples unchanged: the merge's steps replayed, the second's samples
/// looked at only where they could win one. The first wins ties, and a counter is adjusted
/// only at a switch, which then never happens. Before Thanos v0.35 the first sample was a
/// switch too: the caller merges that reading in full.
pub(super) fn first_alone(first: &[Sample], mut second: Second<'_>) -> bool {
    let mut last_t = i64::MIN;
    let mut pen_second = 0i64;
    for &(t, _) in first {
        // as `Merger::step`: the second is sought from the penalty on, the first from the
        // next time, which its samples in order already are; the second wins with an
        // earlier sample
        let from = last_t.saturating_add(1).saturating_add(pen_second);
        if second.has_sample_in(from, t) {
            return false;
        }
        pen_second = if last_t != i64::MIN {
            2 * (t - last_t)
        } else {
            INITIAL_PENALTY
        };
        last_t = t;
    }
    // the first has ended: the second must have nothing left to give
    let from = last_t.saturating_add(1).saturating_add(pen_second);
    !second.has_sample_in(from, i64::MAX)
}
