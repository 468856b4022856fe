//! A remote read answer as received, read whole, and its series: framed chunks
//! (`STREAMED_XOR_CHUNKS`) or, from servers without them, the snappy `ReadResponse` of samples.

use bytes::Bytes;
use prost::Message;

use super::RemoteReadError;
use super::convert::Shaping;
use super::proto as rr;
use crate::store::proto::Series;
use crate::store::{label, raw_chunk};

/// One URL's answer, read whole.
pub(super) struct Answer {
    pub url: String,
    pub body: Body,
}

pub(super) enum Body {
    /// Checked frames of `ChunkedReadResponse`.
    Frames(Vec<Bytes>),
    /// A snappy-compressed `ReadResponse`.
    Samples(Bytes),
}

/// A series held until its request's answers are sorted: its labels in one buffer and its raw
/// chunks only. A request's series are all in memory at once; as `Series` each label costs two
/// allocations and each chunk a 304-byte `AggrChunk` (at a 120 s scrape interval more than its
/// samples), and the chunks' bytes kept their whole frames alive (one window at 110k series,
/// CONCURRENCY=4: 367 MB peak that way, 284 MB this way).
pub(super) struct Held {
    /// The label pairs, each name and value a little-endian u32 length and its bytes.
    labels: Box<[u8]>,
    chunks: Vec<HeldChunk>,
}

struct HeldChunk {
    min_time: i64,
    max_time: i64,
    encoding: i32,
    data: Bytes,
}

impl Held {
    fn new(s: Series) -> Self {
        let mut labels = Vec::with_capacity(
            s.labels
                .iter()
                .map(|l| 8 + l.name.len() + l.value.len())
                .sum(),
        );
        for l in &s.labels {
            for part in [&l.name, &l.value] {
                labels.extend_from_slice(&(part.len() as u32).to_le_bytes());
                labels.extend_from_slice(part);
            }
        }
        let chunks = s
            .chunks
            .into_iter()
            .filter_map(|c| {
                debug_assert!(
                    c.raw.is_some() && c.count.is_none() && c.sum.is_none(),
                    "raw chunks only"
                );
                let raw = c.raw?;
                Some(HeldChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: raw.r#type,
                    // a copy, so that the frame it was read from (labels and all) is freed
                    data: Bytes::copy_from_slice(&raw.data),
                })
            })
            .collect();
        Held {
            labels: labels.into_boxed_slice(),
            chunks,
        }
    }

    /// The label pairs in their order, as bytes: compared as `String`s compare.
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = &self.labels[..];
        std::iter::from_fn(move || {
            let mut part = || {
                let (len, tail) = rest.split_first_chunk::<4>()?;
                let (part, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
                rest = tail;
                Some(part)
            };
            Some((part()?, part()?))
        })
    }

    /// Orders as the StoreAPI orders series: by their label pairs.
    pub(super) fn cmp_labels(&self, other: &Held) -> std::cmp::Ordering {
        self.pairs().cmp(other.pairs())
    }

    pub(super) fn into_series(self) -> Series {
        // the bytes came from `String`s
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Series {
            labels: self.pairs().map(|(n, v)| label(text(n), text(v))).collect(),
            chunks: self
                .chunks
                .into_iter()
                .map(|c| raw_chunk(c.min_time, c.max_time, c.encoding, c.data))
                .collect(),
        }
    }
}

/// Appends the series of one answer to `out`.
pub(super) fn decode(
    a: Answer,
    shaping: &Shaping<'_>,
    max: usize,
    out: &mut Vec<Held>,
) -> Result<(), RemoteReadError> {
    let err = |detail: String, retryable| RemoteReadError::Read {
        endpoint: a.url.clone(),
        detail,
        retryable,
    };
    match a.body {
        Body::Frames(frames) => {
            for (i, f) in frames.into_iter().enumerate() {
                let msg = rr::ChunkedReadResponse::decode(f)
                    .map_err(|e| err(format!("frame {} does not decode: {e}", i + 1), true))?;
                if msg.query_index != 0 {
                    return Err(err(
                        format!("frame {} answers query {}, not 0", i + 1, msg.query_index),
                        false,
                    ));
                }
                for s in msg.chunked_series {
                    out.extend(shaping.chunked(s)?.map(Held::new));
                }
            }
        }
        Body::Samples(raw) => {
            let len = snap::raw::decompress_len(&raw)
                .map_err(|e| err(format!("the samples answer is not snappy: {e}"), true))?;
            if len > max {
                return Err(err(
                    format!(
                        "the samples answer is {len} bytes, more than {max} (GRPC_MAX_MESSAGE_BYTES)"
                    ),
                    false,
                ));
            }
            let data = snap::raw::Decoder::new()
                .decompress_vec(&raw)
                .map_err(|e| err(format!("the samples answer is not snappy: {e}"), true))?;
            let resp = rr::ReadResponse::decode(&data[..])
                .map_err(|e| err(format!("the samples answer does not decode: {e}"), true))?;
            for r in resp.results.into_iter().take(1) {
                for ts in r.timeseries {
                    out.extend(shaping.sampled(ts)?.map(Held::new));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::proto::AggrChunk;

    fn series(labels: &[(&str, &str)], chunks: &[(i64, i64, &'static [u8])]) -> Series {
        Series {
            labels: labels.iter().map(|&(n, v)| label(n, v)).collect(),
            chunks: chunks
                .iter()
                .map(|&(min, max, data)| raw_chunk(min, max, 1, Bytes::from_static(data)))
                .collect::<Vec<AggrChunk>>(),
        }
    }

    #[test]
    fn a_held_series_comes_back_whole_and_sorts_as_its_labels_do() {
        let sets: [&[(&str, &str)]; 6] = [
            &[("__name__", "m"), ("a", "1")],
            &[("__name__", "m"), ("a", "1"), ("b", "2")],
            &[("__name__", "m"), ("a", "bc")],
            &[("__name__", "m"), ("ab", "c")],
            &[("__name__", "m"), ("a", "")],
            &[("__name__", "m"), ("a", "é"), ("cluster", "x")],
        ];
        for set in sets {
            let s = series(set, &[(1, 2, b"\x00\x01"), (3, 4, b"\x00\x02")]);
            assert_eq!(Held::new(s.clone()).into_series(), s);
        }
        for x in sets {
            for y in sets {
                let (sx, sy) = (series(x, &[]), series(y, &[]));
                let by_strings = sx
                    .labels
                    .iter()
                    .map(|l| (&l.name, &l.value))
                    .cmp(sy.labels.iter().map(|l| (&l.name, &l.value)));
                assert_eq!(
                    Held::new(sx.clone()).cmp_labels(&Held::new(sy.clone())),
                    by_strings,
                    "{x:?} {y:?}"
                );
            }
        }
    }
}
