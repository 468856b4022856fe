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

pub use decode::{XorIter, decode_into};
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
    /// Some samples were outside: the others, re-encoded; their first and last times.
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
    /// samples') or re-encoded; `None` when no sample is inside, as Prometheus sends no empty
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
    decode_into(data, scratch)?;
    Ok(cut_decoded(scratch, mint, maxt))
}

/// Cuts a chunk decoded into `samples` to `[mint, maxt]`: a chunk across several ranges is
/// decoded once for all of them.
pub fn cut_decoded(samples: &[Sample], mint: i64, maxt: i64) -> Cut {
    let inside = |&&(t, _): &&Sample| t >= mint && t <= maxt;
    let (Some(&(first, _)), Some(&(last, _))) = (
        samples.iter().find(inside),
        samples.iter().rev().find(inside),
    ) else {
        return Cut::Empty;
    };
    if samples.iter().all(|s| inside(&s)) {
        return Cut::Whole { first, last };
    }
    let mut e = XorEncoder::new();
    for &(t, v) in samples.iter().filter(inside) {
        e.append(t, v);
    }
    Cut::Part {
        data: e.finish(),
        first,
        last,
    }
}
