//! HA replica deduplication, reproducing what Thanos Query (`--deduplication.func=penalty`, the
//! default) does before PromQL sees a series, so the gRPC path equals the HTTP path.
//!
//! The Querier asks stores to drop the replica labels (`without_replica_labels`); its proxy
//! then merges the replicas' now-equal series into one, with their chunks sorted by
//! (min time, max time). Deduplication then:
//! 1. splits the chunks greedily into pseudo-replicas: each chunk goes to the first
//!    pseudo-replica whose last chunk ends before the chunk starts, else to a new one;
//! 2. reads each pseudo-replica's chunks in order, skipping samples not newer than the last,
//!    bounded to the query's `[mint, maxt]`;
//! 3. merges pseudo-replicas pairwise (`((r0 + r1) + r2) + …`) with the penalty rule: the
//!    replica with the earlier next sample wins, but after taking a sample at `t` the other
//!    replica is only looked at again from `t + 2·(t − previous t)` (5 s after the first), so
//!    the merge switches replica across gaps instead of interleaving;
//! 4. for counter functions (`rate`, `increase`, `irate`, `resets`), a replica switched to
//!    whose value is below the last taken value is shifted up by the difference, so the switch
//!    is no false counter reset.
//!
//! For those counter functions the Querier also asks for the `COUNTER` aggregate and reads
//! each pseudo-replica through Thanos' counter-reset iterator before bounding it: NaN samples
//! (staleness markers included) are skipped and resets are removed, the series continuing
//! from its first sample as a monotonic running total. PromQL then sees no reset at all. The
//! rates are the same in exact arithmetic, but not in the last bits, so we do the same.

use crate::chunk::{ChunkError, Cut, decode_into};
use crate::model::Sample;
use crate::store::proto::{AggrChunk, chunk::Encoding};

/// Why a series' chunks could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SeriesDataError {
    #[error(
        "chunk encoding {0} is not supported (only float XOR chunks are; native histograms are not exported)"
    )]
    Encoding(String),
    #[error("a chunk has no raw data (downsampled data is not supported; request raw resolution)")]
    NoRaw,
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

/// The penalty before the first switch, in milliseconds (Thanos' `initialPenalty`).
const INITIAL_PENALTY: i64 = 5000;

/// Greedily splits chunks (as the proxy sorted them) into non-overlapping pseudo-replicas;
/// returns chunk indexes per pseudo-replica.
pub fn split_overlapping(chunks: &[AggrChunk]) -> Vec<Vec<usize>> {
    let mut replicas: Vec<Vec<usize>> = vec![Vec::new()];
    if chunks.is_empty() {
        return replicas;
    }
    replicas[0].push(0);
    'chunks: for i in 1..chunks.len() {
        let min = chunks[i].min_time;
        for r in replicas.iter_mut() {
            match r.last() {
                Some(&last) if chunks[last].max_time >= min => continue,
                _ => {
                    r.push(i);
                    continue 'chunks;
                }
            }
        }
        replicas.push(vec![i]);
    }
    replicas
}

/// Appends the samples of one pseudo-replica within `[mint, maxt]` to `out`. With `counter`,
/// the samples are first made a reset-free running total, from the first sample of the first
/// chunk on (Thanos' ApplyCounterResetsSeriesIterator).
pub fn replica_samples(
    chunks: &[AggrChunk],
    idx: &[usize],
    mint: i64,
    maxt: i64,
    counter: bool,
    out: &mut Vec<Sample>,
) -> Result<(), SeriesDataError> {
    let mut last_t = i64::MIN;
    let mut scratch = Vec::new();
    // counter state: raw value of the last sample, and the running total
    let mut started = false;
    let mut last_v = 0.0f64;
    let mut total = 0.0f64;
    for &i in idx {
        let c = &chunks[i];
        if c.min_time > maxt {
            break;
        }
        // earlier chunks matter to a counter's running total, not to raw samples
        if !counter && c.max_time < mint {
            continue;
        }
        let raw = c.raw.as_ref().ok_or(SeriesDataError::NoRaw)?;
        check_xor(raw.r#type)?;
        scratch.clear();
        decode_into(&raw.data, &mut scratch)?;
        for &(t, v) in scratch.iter() {
            let v = if counter {
                if v.is_nan() {
                    continue;
                }
                if !started {
                    started = true;
                    total = v;
                } else if t > last_t {
                    total += if v >= last_v { v - last_v } else { v };
                } else {
                    if t == last_t {
                        last_v = v;
                    }
                    continue;
                }
                last_v = v;
                total
            } else if t <= last_t {
                continue;
            } else {
                v
            };
            last_t = t;
            if t < mint {
                continue;
            }
            if t > maxt {
                return Ok(());
            }
            out.push((t, v));
        }
    }
    Ok(())
}

/// Decodes and deduplicates one series' chunks for a query over `[mint, maxt]`; `counter`
/// when the function nearest the selector is a counter function.
pub fn series_samples(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
    counter: bool,
) -> Result<Vec<Sample>, SeriesDataError> {
    let groups = split_overlapping(chunks);
    if groups.len() == 1 {
        let mut out = Vec::new();
        replica_samples(chunks, &groups[0], mint, maxt, counter, &mut out)?;
        return Ok(out);
    }
    let mut replicas = Vec::with_capacity(groups.len());
    for g in &groups {
        let mut s = Vec::new();
        replica_samples(chunks, g, mint, maxt, counter, &mut s)?;
        replicas.push(s);
    }
    Ok(merge(replicas, counter))
}

/// Whether a store trimmed these chunks to a request over `[mint, maxt]`: none of them holds
/// a sample outside it. Prometheus' TSDB (behind sidecars, receivers, rulers and remote read)
/// re-encodes a request's edge chunks with only the samples inside its range; a store gateway
/// sends whole chunks, which reach past the range wherever a chunk spans one of its edges.
pub fn trimmed_to(chunks: &[AggrChunk], mint: i64, maxt: i64) -> bool {
    chunks
        .iter()
        .all(|c| c.min_time >= mint && c.max_time <= maxt)
}

/// The chunks a trimming store (see `trimmed_to`) sends for a request over `[mint, maxt]`,
/// from the chunks it sent for a longer request: those inside the range as they are, the
/// ones across an edge re-encoded with their samples inside it, in the order the Querier's
/// proxy sorts them. A window's samples, deduplicated and counter-adjusted from these, are
/// then bit for bit what a request for that window alone gives (Thanos splits overlapping
/// replicas by chunk bounds, and a counter's running total starts at the first sample a
/// request returns: both depend on the cut).
pub fn cut_to(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
) -> Result<Vec<AggrChunk>, SeriesDataError> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for c in chunks {
        if c.max_time < mint || c.min_time > maxt {
            continue;
        }
        if c.min_time >= mint && c.max_time <= maxt {
            out.push(c.clone());
            continue;
        }
        let raw = c.raw.as_ref().ok_or(SeriesDataError::NoRaw)?;
        check_xor(raw.r#type)?;
        let (min_time, max_time, data) =
            match crate::chunk::cut(&raw.data, mint, maxt, &mut scratch)? {
                Cut::Empty => continue, // Prometheus sends no empty chunk
                // its stated times reached past the range, its samples did not
                Cut::Whole { first, last } => (first, last, raw.data.clone()),
                Cut::Part { data, first, last } => (first, last, data.into()),
            };
        out.push(crate::store::raw_chunk(
            min_time, max_time, raw.r#type, data,
        ));
    }
    out.sort_by_key(|c| (c.min_time, c.max_time));
    Ok(out)
}

fn check_xor(kind: i32) -> Result<(), SeriesDataError> {
    if kind == Encoding::Xor as i32 {
        return Ok(());
    }
    let name = Encoding::try_from(kind)
        .map(|e| e.as_str_name().to_string())
        .unwrap_or_else(|_| format!("#{kind}"));
    Err(SeriesDataError::Encoding(name))
}

/// Merges replicas' samples with the penalty rule; `counter` enables the counter adjustment.
pub fn merge(replicas: Vec<Vec<Sample>>, counter: bool) -> Vec<Sample> {
    let mut it = replicas.into_iter();
    let Some(first) = it.next() else {
        return Vec::new();
    };
    let mut node = Node::leaf(first, counter);
    for r in it {
        node = Node::Merge(Box::new(Merger::new(node, Node::leaf(r, counter))));
    }
    let mut out = Vec::new();
    while node.next() {
        out.push(node.at());
    }
    out
}

/// An iterator in the merge tree, with chunkenc.Iterator's contract: `next` and `seek`
/// report whether there is a current sample; `seek` never moves backwards and leaves the
/// iterator alone when the current sample is already at or after the target.
enum Node {
    Leaf(Leaf),
    Merge(Box<Merger>),
}

struct Leaf {
    samples: Vec<Sample>,
    // index of the current sample; None before the first `next`
    pos: Option<usize>,
    counter: bool,
    adjust: f64,
}

struct Merger {
    a: Node,
    b: Node,
    a_ok: bool,
    b_ok: bool,
    last_t: i64,
    last_is_a: bool,
    pen_a: i64,
    pen_b: i64,
    use_a: bool,
}

impl Node {
    fn leaf(samples: Vec<Sample>, counter: bool) -> Node {
        // a counter replica comes from the counter-reset reading, which drops NaN samples
        // (staleness markers included), so its adjustment never touches one
        debug_assert!(!counter || samples.iter().all(|s| !s.1.is_nan()));
        Node::Leaf(Leaf {
            samples,
            pos: None,
            counter,
            adjust: 0.0,
        })
    }

    fn next(&mut self) -> bool {
        match self {
            Node::Leaf(l) => {
                let p = l.pos.map_or(0, |p| p + 1);
                l.pos = Some(p.min(l.samples.len()));
                p < l.samples.len()
            }
            Node::Merge(m) => m.next(),
        }
    }

    fn seek(&mut self, t: i64) -> bool {
        match self {
            Node::Leaf(l) => {
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
            Node::Leaf(l) => Node::at_leaf(l),
            Node::Merge(m) => m.at(),
        }
    }

    fn at_t(&self) -> i64 {
        self.at().0
    }

    fn adjust_at_value(&mut self, last: f64) {
        match self {
            Node::Leaf(l) => {
                if l.counter {
                    let (_, v) = Node::at_leaf(l);
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

    fn at_leaf(l: &Leaf) -> Sample {
        let (t, v) = l.samples[l.pos.unwrap_or(0).min(l.samples.len() - 1)];
        // Only a counter replica is adjusted (Thanos' counterErrAdjustSeriesIterator); any
        // other passes its value through untouched (noopAdjustableSeriesIterator). Even
        // `v + 0.0` would quiet a staleness marker's signalling NaN (0x7ff0000000000002
        // becomes 0x7ff8000000000002), which PromQL then takes for a value: Prometheus'
        // value.IsStaleNaN compares the exact bits.
        if l.counter { (t, v + l.adjust) } else { (t, v) }
    }
}

impl Merger {
    fn new(mut a: Node, mut b: Node) -> Merger {
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
            use_a: true,
        }
    }

    fn last(&self) -> &Node {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(start: i64, every: i64, n: usize, f: impl Fn(i64) -> f64) -> Vec<Sample> {
        (0..n as i64)
            .map(|i| {
                let t = start + i * every;
                (t, f(t))
            })
            .collect()
    }

    fn chunk(s: &[Sample]) -> AggrChunk {
        crate::chunk::xor_chunk(s).unwrap()
    }

    #[test]
    fn offset_replicas_do_not_interleave() {
        // a scrapes at :00, b 3.2 s later; the merge keeps to a
        let a = scrape(0, 30_000, 100, |t| t as f64);
        let b = scrape(3200, 30_000, 100, |t| t as f64 + 0.5);
        let got = merge(vec![a.clone(), b], false);
        assert_eq!(got, a);
    }

    #[test]
    fn replica_gap_is_filled_from_the_other_replica() {
        // a misses [30 min, 45 min); the merge switches to b across the gap and back never
        let mut a = scrape(0, 30_000, 120, |_| 1.0);
        a.retain(|s| !(1_800_000..2_700_000).contains(&s.0));
        let b = scrape(3200, 30_000, 120, |_| 2.0);
        let got = merge(vec![a, b], false);
        let from_b = got.iter().filter(|s| s.1 == 2.0).count();
        assert!(from_b >= 29, "b fills the gap: {from_b}");
        // after the switch, b is kept until it ends: a is only considered across a gap
        assert!(got.iter().skip_while(|s| s.1 == 1.0).all(|s| s.1 == 2.0));
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        // the switch costs samples: b's first sample after the gap must be later than the
        // penalty (2 x the last interval after the last taken a sample)
        let last_a = got.iter().take_while(|s| s.1 == 1.0).last().unwrap().0;
        let first_b = got.iter().find(|s| s.1 == 2.0).unwrap().0;
        assert!(first_b > last_a + 60_000);
    }

    #[test]
    fn counter_switch_is_adjusted_upwards() {
        // b's counter runs 100 lower than a's; a stops half way. Taken as is, the switch
        // would look like a reset; the adjustment lifts b by the difference.
        let a = scrape(0, 30_000, 50, |t| 1000.0 + t as f64 / 1000.0);
        let b = scrape(3200, 30_000, 100, |t| 900.0 + t as f64 / 1000.0);
        let got = merge(vec![a, b], true);
        assert!(
            got.windows(2).all(|w| w[1].1 >= w[0].1),
            "no false reset: {got:?}"
        );
        let plain = merge(
            vec![
                scrape(0, 30_000, 50, |t| 1000.0 + t as f64 / 1000.0),
                scrape(3200, 30_000, 100, |t| 900.0 + t as f64 / 1000.0),
            ],
            false,
        );
        assert!(plain.windows(2).any(|w| w[1].1 < w[0].1));
    }

    #[test]
    fn overlapping_chunks_split_into_pseudo_replicas() {
        let a1 = scrape(0, 30_000, 120, |_| 1.0);
        let a2 = scrape(3_600_000, 30_000, 120, |_| 1.0);
        let b1 = scrape(3200, 30_000, 120, |_| 2.0);
        let b2 = scrape(3_603_200, 30_000, 120, |_| 2.0);
        let mut chunks = vec![chunk(&a1), chunk(&b1), chunk(&a2), chunk(&b2)];
        chunks.sort_by_key(|c| (c.min_time, c.max_time));
        let groups = split_overlapping(&chunks);
        assert_eq!(groups, vec![vec![0, 2], vec![1, 3]]);
        let got = series_samples(&chunks, 0, 8_000_000, false).unwrap();
        assert_eq!(got.len(), 240);
        assert!(got.iter().all(|s| s.1 == 1.0));
        // bounds are inclusive and apply before deduplication
        let got = series_samples(&chunks, 30_000, 90_000, false).unwrap();
        assert_eq!(
            got.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![30_000, 60_000, 90_000]
        );
    }

    #[test]
    fn counter_functions_see_a_reset_free_total() {
        // 10, 20, 5 (a reset), NaN (a staleness marker), 15: Thanos' counter iterator makes it
        // 10, 20, 25, 35, starting from the first sample even before the bounds
        let s = vec![
            (0, 10.0),
            (1000, 20.0),
            (2000, 5.0),
            (3000, f64::from_bits(0x7ff0_0000_0000_0002)),
            (4000, 15.0),
        ];
        let c = [chunk(&s)];
        let got = series_samples(&c, 1000, 10_000, true).unwrap();
        assert_eq!(got, vec![(1000, 20.0), (2000, 25.0), (4000, 35.0)]);
        let raw = series_samples(&c, 1000, 10_000, false).unwrap();
        assert_eq!(raw.len(), 4);
        assert!(raw[2].1.is_nan());
    }

    #[test]
    fn merge_keeps_staleness_markers_bit_exact() {
        // both replicas end with a marker; the merged series must end with the very same
        // bits, or the engine cannot tell the marker from a NaN value
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut a = scrape(0, 1000, 10, |_| 1.0);
        a.push((10_000, stale));
        let mut b = scrape(500, 1000, 10, |_| 1.0);
        b.push((10_500, stale));
        let got = merge(vec![a, b], false);
        assert_eq!(got.len(), 11);
        assert_eq!(got[10].0, 10_000);
        assert_eq!(got[10].1.to_bits(), 0x7ff0_0000_0000_0002);
    }

    #[test]
    fn three_replicas() {
        let a = scrape(0, 30_000, 10, |_| 1.0);
        let b = scrape(1000, 30_000, 100, |_| 2.0);
        let c = scrape(2000, 30_000, 100, |_| 3.0);
        let got = merge(vec![a, b, c], false);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(got[0].1, 1.0);
        assert!(got.len() > 90);
    }

    #[test]
    fn unknown_encoding_is_named() {
        let mut c = chunk(&scrape(0, 1000, 3, |_| 1.0));
        c.raw.as_mut().unwrap().r#type = Encoding::Histogram as i32;
        let err = series_samples(&[c], 0, 10_000, false).unwrap_err();
        assert!(err.to_string().contains("HISTOGRAM"), "{err}");
    }

    #[test]
    fn a_counters_running_total_depends_on_where_the_request_starts() {
        // why the gRPC source asks a counter's windows one request each: Thanos adds the
        // values before each reset to a running total from the first sample a request
        // returns. The same samples of the second hour, served in a chunk that starts an hour
        // earlier (one request over two windows, a reset in between) or trimmed to the window
        // (a sidecar trims its chunks to the request), give increases that differ in the last
        // bits, and so would the files
        let samples = scrape(0, 15_000, 480, |t| {
            let t = if t >= 1_800_000 { t - 1_800_000 } else { t };
            (t as f64 / 15_000.0) * 0.173 + 0.01
        });
        let (mint, maxt) = (3_600_000 - 300_000 + 1, 7_200_000 - 15_000);
        let increases = |s: &[Sample]| -> Vec<u64> {
            s.windows(2).map(|w| (w[1].1 - w[0].1).to_bits()).collect()
        };
        let long = series_samples(&[chunk(&samples)], mint, maxt, true).unwrap();
        let trimmed: Vec<Sample> = samples.iter().copied().filter(|s| s.0 >= mint).collect();
        let short = series_samples(&[chunk(&trimmed)], mint, maxt, true).unwrap();
        assert_eq!(long.len(), short.len());
        assert!(long.iter().zip(&short).all(|(a, b)| a.0 == b.0));
        let (long, short) = (increases(&long), increases(&short));
        let differ = long.iter().zip(&short).filter(|(a, b)| a != b).count();
        assert!(differ > 0, "the increases are bit-identical");
        // gauges pass through: the same samples either way
        let long = series_samples(&[chunk(&samples)], mint, maxt, false).unwrap();
        let short = series_samples(&[chunk(&trimmed)], mint, maxt, false).unwrap();
        assert_eq!(long, short);
    }

    /// What a trimming store sends for `[mint, maxt]` alone: each replica's chunks of 120
    /// samples, those across an edge re-encoded with their samples inside.
    fn sidecar_answer(replicas: &[&[Sample]], mint: i64, maxt: i64) -> Vec<AggrChunk> {
        let mut out: Vec<AggrChunk> = replicas
            .iter()
            .flat_map(|r| r.chunks(120))
            .filter_map(|c| {
                let inside: Vec<Sample> = c
                    .iter()
                    .copied()
                    .filter(|s| s.0 >= mint && s.0 <= maxt)
                    .collect();
                (!inside.is_empty()).then(|| chunk(&inside))
            })
            .collect();
        out.sort_by_key(|c| (c.min_time, c.max_time));
        out
    }

    fn bits(s: &[Sample]) -> Vec<(i64, u64)> {
        s.iter().map(|x| (x.0, x.1.to_bits())).collect()
    }

    #[test]
    fn a_window_cut_from_a_longer_request_is_the_windows_own_request() {
        // an HA pair of counters (a reset in the middle) scraped 2.2 s apart, 2 h in chunks of
        // 30 min, asked as one request over both hours; the second hour's window cut from it
        // must give bit for bit the samples of a request for that window alone, counter-
        // adjusted or not, even though Thanos' pseudo-replicas and running totals depend on
        // where a request starts
        let counter = |t: i64| {
            let t = if t >= 5_400_000 { t - 5_400_000 } else { t };
            (t as f64 / 15_000.0) * 0.173 + 0.01
        };
        let a = scrape(1_000, 15_000, 480, counter);
        let b = scrape(3_200, 15_000, 480, |t| counter(t) + 0.003);
        let (long_min, long_max) = (1, 7_200_000);
        let long = sidecar_answer(&[&a, &b], long_min, long_max);
        assert!(trimmed_to(&long, long_min, long_max));
        assert_eq!(split_overlapping(&long).len(), 2, "the replicas overlap");
        for (mint, maxt) in [
            (3_600_000 - 300_000 + 1, 7_200_000 - 15_000),
            (1_800_000 - 300_000 + 1, 3_600_000 - 15_000),
            (3_000_001, 3_000_001 + 60_000),
        ] {
            let alone = sidecar_answer(&[&a, &b], mint, maxt);
            let cut = cut_to(&long, mint, maxt).unwrap();
            assert_eq!(
                cut.iter()
                    .map(|c| (c.min_time, c.max_time))
                    .collect::<Vec<_>>(),
                alone
                    .iter()
                    .map(|c| (c.min_time, c.max_time))
                    .collect::<Vec<_>>()
            );
            for is_counter in [false, true] {
                let want = series_samples(&alone, mint, maxt, is_counter).unwrap();
                let got = series_samples(&cut, mint, maxt, is_counter).unwrap();
                assert!(!want.is_empty());
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{mint}..{maxt} counter {is_counter}"
                );
            }
        }
        // a store gateway's whole chunks reach past a request's range: not a trimmed answer
        let whole: Vec<AggrChunk> = a.chunks(120).map(chunk).collect();
        assert!(!trimmed_to(&whole, 3_300_001, 7_200_000));
    }
}
