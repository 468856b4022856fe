//! A remote read answer as received, read whole, and its series: framed chunks
//! (`STREAMED_XOR_CHUNKS`) or, from servers without them, the snappy `ReadResponse` of samples.

use bytes::Bytes;
use prost::Message;

use super::RemoteReadError;
use super::convert::Shaping;
use super::proto as rr;
use crate::store::proto::Series;

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

/// Appends the series of one answer to `out`.
pub(super) fn decode(
    a: Answer,
    shaping: &Shaping<'_>,
    max: usize,
    out: &mut Vec<Series>,
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
                    out.extend(shaping.chunked(s)?);
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
                    out.extend(shaping.sampled(ts)?);
                }
            }
        }
    }
    Ok(())
}
