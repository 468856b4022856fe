//! Prometheus' XOR chunk encoding (`chunkenc.XORChunk`), the float-sample chunk format the
//! StoreAPI streams.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream: the first timestamp as a
//! signed varint and the first value as 64 raw bits; the second timestamp as an unsigned
//! varint delta and its value XOR-encoded; then delta-of-delta timestamps and XOR values.
//! Decoding stops after the counted samples: some Prometheus versions wrote padding after.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use thiserror::Error;

pub use decode::{Mark, XorIter, decode_into, decode_marked, decode_marked_from, decode_until};
pub use encode::{XorEncoder, encode};

use crate::model::Sample;
use crate::store::proto::{AggrChunk, chunk::Encoding};

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk is truncated: {0} of {1} samples decoded")]
    Truncated(u16, u16),
    #[error("chunk is corrupt at sample {0}: {1}")]
    Corrupt(u16, &'static str),
}

/// `samples` (in time order) as one XOR chunk of a `Series`; `None` when there are none.
pub fn xor_chunk(samples: &[Sample]) -> Option<AggrChunk> {
    let (first, last) = (samples.first()?.0, samples.last()?.0);
    Some(crate::store::raw_chunk(
        first,
        last,
        Encoding::Xor as i32,
        encode(samples).into(),
    ))
}

/// An XOR chunk cut to a request's range, as Prometheus' TSDB cuts a request's edge chunks.
#[derive(Debug, PartialEq)]
pub enum Cut {
    /// Every sample is inside: the chunk as it is; its first and last sample times.
    Whole { first: i64, last: i64 },
    /// Some samples were outside: the others as a chunk of their own (see `cut_decoded`);
    /// their first and last times.
    Part {
        data: Vec<u8>,
        first: i64,
        last: i64,
    },
    /// No sample is inside.
    Empty,
}

impl Cut {
    /// The cut of `raw`'s chunk as a `Series` sends it: the chunk as it was (its times its
    /// samples') or its part; `None` when no sample is inside, as Prometheus sends no empty
    /// chunk.
    pub fn into_chunk(self, raw: &crate::store::proto::Chunk) -> Option<AggrChunk> {
        let (first, last, data) = match self {
            Cut::Empty => return None,
            // its stated times reached past the range, its samples did not
            Cut::Whole { first, last } => (first, last, raw.data.clone()),
            Cut::Part { data, first, last } => (first, last, data.into()),
        };
        Some(crate::store::raw_chunk(first, last, raw.r#type, data))
    }
}

/// Cuts the XOR chunk `data` to `[mint, maxt]`; `scratch` holds the decoded samples.
pub fn cut(
    data: &[u8],
    mint: i64,
    maxt: i64,
    scratch: &mut Vec<Sample>,
) -> Result<Cut, ChunkError> {
    scratch.clear();
    let mut marks = Vec::new();
    decode_marked(data, scratch, &mut marks)?;
    Ok(cut_decoded(data, (0, scratch), &marks, mint, maxt))
}

/// Cuts the XOR chunk `data`, decoded into `samples` and `marks` from its `skipped`-th sample
/// on (see `decode_marked_from`; every sample at or after `mint` among them), to
/// `[mint, maxt]`: a chunk across several ranges is decoded once for all of them.
///
/// The part is not encoded again sample by sample: a chunk's first samples are the first
/// bits of its stream, and a part that starts later is encoded up to its first value change,
/// which is written in the window the original holds there; a decoder of the part then
/// holds the original's state, and the rest of the bits are copied. Edge chunks are most
/// chunks of a multi-window request, and encoding them again was a third of its set-aside
/// (docs/benchmarks.md, "Exporter CPU"). The bytes may differ from what Prometheus' appender
/// writes for the same samples (a window it would not open); the samples do not.
pub fn cut_decoded(
    data: &[u8],
    (skipped, samples): (usize, &[Sample]),
    marks: &[Mark],
    mint: i64,
    maxt: i64,
) -> Cut {
    debug_assert_eq!(samples.len(), marks.len());
    let inside = |&(t, _): &Sample| t >= mint && t <= maxt;
    let (Some(a), Some(b)) = (
        samples.iter().position(inside),
        samples.iter().rposition(inside),
    ) else {
        return Cut::Empty;
    };
    let (first, last) = (samples[a].0, samples[b].0);
    // the chunk's own first sample
    let at_start = skipped == 0 && a == 0;
    if at_start && b == samples.len() - 1 {
        return Cut::Whole { first, last };
    }
    let stream = &data[2..];
    let count = (b - a + 1) as u16;
    let data = if at_start {
        let end = marks[b].end as usize;
        let mut bytes = Vec::with_capacity(2 + end.div_ceil(8));
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(&stream[..end.div_ceil(8)]);
        if !end.is_multiple_of(8) {
            *bytes.last_mut().expect("a sample has bits") &= 0xffu8 << (8 - end % 8);
        }
        bytes
    } else {
        let changes = |i: usize| samples[i].1.to_bits() != samples[i - 1].1.to_bits();
        // after the last change every value is one 0 bit, whatever the window
        let last_change = (a + 1..=b).rev().find(|&i| changes(i)).unwrap_or(a);
        let mut e = XorEncoder::new();
        e.append(samples[a].0, samples[a].1);
        let mut copy_from = None;
        for j in a + 1..=b {
            let (t, v) = samples[j];
            let changed = changes(j);
            if changed {
                let m = marks[j];
                e.append_in(t, v, (u32::from(m.leading), u32::from(m.trailing)));
            } else {
                e.append(t, v);
            }
            if j < b && (changed || j >= last_change) {
                copy_from = Some(j);
                break;
            }
        }
        match copy_from {
            Some(j) => e.finish_with(
                stream,
                (marks[j].end as usize, marks[b].end as usize),
                (b - j) as u16,
            ),
            None => e.finish(),
        }
    };
    Cut::Part { data, first, last }
}
