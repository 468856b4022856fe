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
//! from its first sample as a monotonic running total. PromQL then sees no reset at all, and
//! its zero-point clamp sees the running total, not the raw value: after a reset before a
//! range's first sample a rate differs from Prometheus' own (by up to ~20 % on churning
//! pods), not only in the last bits. That is Thanos Query's answer, so it is ours over the
//! StoreAPI; over a single Prometheus or Mimir, `prometheus_samples` reads as they do.

mod instant;
mod penalty;
#[cfg(test)]
mod tests;
mod trim;

use crate::chunk::{ChunkError, decode_until};
use crate::model::Sample;
use crate::store::proto::{AggrChunk, chunk::Encoding};
pub use instant::instant_skip;
use instant::instant_start;
pub use penalty::{merge, merge_into};
pub use trim::{crosses_a_range, cut_to, cut_to_each, trimmed_at_the_end, trimmed_to};

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
    #[error(
        "a label name or value is not UTF-8 text, as Prometheus labels are: the store's data is corrupt"
    )]
    NotUtf8,
}

/// Greedily splits chunks (as the proxy sorted them) into non-overlapping pseudo-replicas;
/// returns chunk indexes per pseudo-replica.
pub fn split_overlapping(chunks: &[AggrChunk]) -> Vec<Vec<usize>> {
    let mut lanes = Vec::new();
    let n = split_overlapping_into(chunks, &mut lanes);
    lanes.truncate(n);
    lanes
}

/// Whether chunks (as the proxy sorted them) split into more than one pseudo-replica, told
/// without splitting them: `split_overlapping` puts every chunk in the first unless one
/// starts before the chunk before it ends.
pub fn overlapping(chunks: &[AggrChunk]) -> bool {
    chunks.windows(2).any(|w| w[0].max_time >= w[1].min_time)
}

/// `split_overlapping` into `lanes`, whose lists are reused: returns how many of them the
/// chunks fill (at least one, empty when there is no chunk).
fn split_overlapping_into(chunks: &[AggrChunk], lanes: &mut Vec<Vec<usize>>) -> usize {
    lanes.iter_mut().for_each(Vec::clear);
    if lanes.is_empty() {
        lanes.push(Vec::new());
    }
    let mut used = 1;
    'chunks: for (i, c) in chunks.iter().enumerate() {
        for r in lanes[..used].iter_mut() {
            match r.last() {
                Some(&last) if chunks[last].max_time >= c.min_time => continue,
                _ => {
                    r.push(i);
                    continue 'chunks;
                }
            }
        }
        if lanes.len() == used {
            lanes.push(Vec::new());
        }
        lanes[used].push(i);
        used += 1;
    }
    used
}

/// Appends the samples of one pseudo-replica within `[mint, maxt]` to `out`, decoding each
/// chunk into `scratch`. With `counter`, the samples are first made a reset-free running
/// total, from the first sample of the first chunk on (Thanos'
/// ApplyCounterResetsSeriesIterator).
fn replica_samples(
    chunks: &[AggrChunk],
    idx: &[usize],
    (mint, maxt): (i64, i64),
    counter: bool,
    scratch: &mut Vec<Sample>,
    out: &mut Vec<Sample>,
) -> Result<(), SeriesDataError> {
    let mut last_t = i64::MIN;
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
        let stopped = decode_until(&raw.data, maxt, scratch)?;
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
        // the chunk reached past the range: so would the rest of the replica
        if stopped {
            return Ok(());
        }
    }
    Ok(())
}

/// How Thanos Query reads a series for one query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// The function nearest the selector is a counter function: counters without resets, and
    /// adjusted at switches between replicas.
    pub counter: bool,
    /// The merge's first sample counts as a switch between replicas (Thanos before v0.35,
    /// whose `dedupSeriesIterator` started with `useA` false: a first sample from the first
    /// replica then adjusts the second by the difference).
    pub first_sample_switches: bool,
}

impl From<bool> for Reading {
    /// The current releases' reading, `counter` or not.
    fn from(counter: bool) -> Self {
        Reading {
            counter,
            first_sample_switches: false,
        }
    }
}

/// Buffers a series' reading reuses from the previous series': the evaluation thread reads
/// hundreds of thousands of series a window, and their allocations were most of what it
/// spent outside decoding (docs/benchmarks.md, "Exporter CPU").
#[derive(Debug, Default)]
pub struct Scratch {
    chunk: Vec<Sample>,
    replicas: Vec<Vec<Sample>>,
    lanes: Vec<Vec<usize>>,
}

impl Scratch {
    /// One cleared buffer per pseudo-replica.
    fn replicas(&mut self, n: usize) -> &mut [Vec<Sample>] {
        if self.replicas.len() < n {
            self.replicas.resize_with(n, Vec::new);
        }
        let replicas = &mut self.replicas[..n];
        replicas.iter_mut().for_each(Vec::clear);
        replicas
    }
}

/// Decodes and deduplicates one series' chunks for a query over `[mint, maxt]`, read as
/// `reading` says (a bool: whether the function nearest the selector is a counter function).
pub fn series_samples(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
    reading: impl Into<Reading>,
) -> Result<Vec<Sample>, SeriesDataError> {
    let mut out = Vec::new();
    series_samples_into(
        chunks,
        (mint, maxt),
        reading.into(),
        None,
        &mut Scratch::default(),
        &mut out,
    )?;
    Ok(out)
}

/// `series_samples` into `out` (cleared first), with buffers kept from series to series.
/// With `instant_from`, every selector reading the series is an instant one whose first step
/// is there: a single replica's chunks before the one holding it are not read (see
/// `instant_start`; replicas are merged from the range's start, as Thanos does, and a
/// counter's running total from its first sample).
pub fn series_samples_into(
    chunks: &[AggrChunk],
    range: (i64, i64),
    reading: Reading,
    instant_from: Option<i64>,
    scratch: &mut Scratch,
    out: &mut Vec<Sample>,
) -> Result<(), SeriesDataError> {
    out.clear();
    let counter = reading.counter;
    let mut lanes = std::mem::take(&mut scratch.lanes);
    let n = split_overlapping_into(chunks, &mut lanes);
    let read = if n == 1 {
        let lane = &lanes[0];
        let from = match instant_from {
            Some(at) if !counter => instant_start(chunks, lane, at),
            _ => 0,
        };
        replica_samples(
            chunks,
            &lane[from..],
            range,
            counter,
            &mut scratch.chunk,
            out,
        )
    } else {
        let mut chunk = std::mem::take(&mut scratch.chunk);
        let replicas = scratch.replicas(n);
        let read = (|| {
            replica_samples(
                chunks,
                &lanes[0],
                range,
                counter,
                &mut chunk,
                &mut replicas[0],
            )?;
            // An HA pair, the usual case: the merge follows the first unless the second has a
            // sample where the first has none (a gap, an earlier start, a later end), which
            // the first's times and the second's chunk bounds tell, decoding a chunk of the
            // second only where a gap falls inside it. Where it has none, the result is the
            // first's samples, and a chunk of the second that cannot be read goes unnoticed,
            // as it would not change the result. Before Thanos v0.35 the first sample was a
            // switch, which reads the second's values.
            if n == 2
                && !reading.first_sample_switches
                && penalty::first_alone(
                    &replicas[0],
                    penalty::Second::new(chunks, &lanes[1], range),
                )
            {
                std::mem::swap(out, &mut replicas[0]);
                return Ok(());
            }
            for (g, s) in lanes[1..n].iter().zip(&mut replicas[1..]) {
                replica_samples(chunks, g, range, counter, &mut chunk, s)?;
            }
            merge_into(replicas, reading, out);
            Ok(())
        })();
        scratch.chunk = chunk;
        read
    };
    scratch.lanes = lanes;
    read
}

/// Decodes one series' chunks for a query over `[mint, maxt]` as Prometheus (or Mimir) reads
/// its own TSDB: the raw samples, counters as they are (its `rate` handles resets inside the
/// range itself) and NaN kept; chunks that overlap (out-of-order ingestion) merged by time,
/// a timestamp taken once. No replica lanes: one server is one replica.
pub fn prometheus_samples(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
) -> Result<Vec<Sample>, SeriesDataError> {
    let mut out = Vec::new();
    prometheus_samples_into(
        chunks,
        (mint, maxt),
        None,
        &mut Scratch::default(),
        &mut out,
    )?;
    Ok(out)
}

/// `prometheus_samples` into `out` (cleared first), with buffers kept from series to series;
/// `instant_from` as for `series_samples_into`.
pub fn prometheus_samples_into(
    chunks: &[AggrChunk],
    range: (i64, i64),
    instant_from: Option<i64>,
    scratch: &mut Scratch,
    out: &mut Vec<Sample>,
) -> Result<(), SeriesDataError> {
    out.clear();
    let mut lanes = std::mem::take(&mut scratch.lanes);
    let n = split_overlapping_into(chunks, &mut lanes);
    let from = match instant_from {
        Some(at) if n == 1 => instant_start(chunks, &lanes[0], at),
        _ => 0,
    };
    let read = lanes[..n].iter().try_for_each(|g| {
        replica_samples(chunks, &g[from..], range, false, &mut scratch.chunk, out)
    });
    scratch.lanes = lanes;
    read?;
    if n > 1 {
        // stable: of two samples at one time, the earlier chunk's is kept
        out.sort_by_key(|s| s.0);
        out.dedup_by_key(|s| s.0);
    }
    Ok(())
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
