//! The `Series` call's answer, decoded frame by frame from the buffer each frame arrived in:
//! prost reads a contiguous `Bytes` with a slice's bounds where tonic's own decoder hands it
//! a view that re-checks the frame's end at every field (a day's answer is millions of
//! labels and chunks), and the frame's size is known without encoding the message again.
//! The usual answer is read by hand (`usual`), its lists allocated once; prost reads the rest.

use std::ops::Range;

use bytes::{Buf, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{GrpcMethod, Request, Status, Streaming};
use tonic_prost::ProstCodec;

use super::proto::series_response::Result as Answer;
use super::proto::{AggrChunk, Chunk, Label, Series, SeriesBatch, SeriesRequest, SeriesResponse};

/// A `Series` response and the bytes of its frame (decompressed).
pub struct Frame {
    pub response: SeriesResponse,
    pub bytes: usize,
}

/// `thanos.Store/Series`, as the generated client calls it, with frames decoded as [`Frame`]s.
pub async fn series(
    mut grpc: tonic::client::Grpc<Channel>,
    mut req: Request<SeriesRequest>,
) -> Result<Streaming<Frame>, Status> {
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("service was not ready: {e}")))?;
    req.extensions_mut()
        .insert(GrpcMethod::new("thanos.Store", "Series"));
    let path = PathAndQuery::from_static("/thanos.Store/Series");
    Ok(grpc
        .server_streaming(req, path, SeriesCodec)
        .await?
        .into_inner())
}

struct SeriesCodec;

impl Codec for SeriesCodec {
    type Encode = SeriesRequest;
    type Decode = Frame;
    type Encoder = <ProstCodec<SeriesRequest, SeriesResponse> as Codec>::Encoder;
    type Decoder = FrameDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<SeriesRequest, SeriesResponse>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        FrameDecoder
    }
}

struct FrameDecoder;

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Frame>, Status> {
        // the frame's own bytes, not a copy: chunk data and labels stay slices of them
        let frame = buf.copy_to_bytes(buf.remaining());
        decode(frame).map(Some)
    }
}

fn decode(frame: Bytes) -> Result<Frame, Status> {
    let bytes = frame.len();
    let response = match usual(&frame) {
        Some(response) => response,
        None => SeriesResponse::decode(frame)
            // as tonic's own decoder answers a frame that is no message
            .map_err(|e| Status::internal(e.to_string()))?,
    };
    Ok(Frame { response, bytes })
}

// The keys (field number and wire type) of the fields the usual answer has.
const RESPONSE_SERIES: u64 = 1 << 3 | LEN;
const RESPONSE_BATCH: u64 = 4 << 3 | LEN;
const BATCH_SERIES: u64 = 1 << 3 | LEN;
const SERIES_LABEL: u64 = 1 << 3 | LEN;
const SERIES_CHUNK: u64 = 2 << 3 | LEN;
const LABEL_NAME: u64 = 1 << 3 | LEN;
const LABEL_VALUE: u64 = 2 << 3 | LEN;
const AGGR_MIN_TIME: u64 = 1 << 3 | VARINT;
const AGGR_MAX_TIME: u64 = 2 << 3 | VARINT;
const AGGR_RAW: u64 = 3 << 3 | LEN;
const CHUNK_TYPE: u64 = 1 << 3 | VARINT;
const CHUNK_DATA: u64 = 2 << 3 | LEN;
const CHUNK_HASH: u64 = 3 << 3 | VARINT;
const VARINT: u64 = 0;
const LEN: u64 = 2;

/// The usual answer (one series, or a batch of them, of labels and raw chunks) read by hand;
/// `None` for anything else, a warning, hints, an aggregate chunk, a field repeated or
/// unknown, a malformed frame, which prost reads (or refuses) instead. prost grows each
/// series' lists a push at a time, and a chunk is the size of its six kinds: a day's answer
/// is millions of them. Read here, each list is counted first and allocated once.
fn usual(frame: &Bytes) -> Option<SeriesResponse> {
    let mut top = Wire::new(frame, 0..frame.len());
    let key = top.varint()?;
    let body = top.len()?;
    if !top.done() {
        return None;
    }
    let result = match key {
        RESPONSE_SERIES => Answer::Series(one_series(frame, body)?),
        RESPONSE_BATCH => {
            let mut all = Vec::with_capacity(Wire::new(frame, body.clone()).count(BATCH_SERIES)?);
            let mut batch = Wire::new(frame, body);
            while !batch.done() {
                batch.expect(BATCH_SERIES)?;
                all.push(one_series(frame, batch.len()?)?);
            }
            Answer::Batch(SeriesBatch { series: all })
        }
        _ => return None,
    };
    Some(SeriesResponse {
        result: Some(result),
    })
}

fn one_series(frame: &Bytes, body: Range<usize>) -> Option<Series> {
    // first the counts: labels and chunks are the only fields
    let (mut labels, mut chunks) = (0, 0);
    let mut w = Wire::new(frame, body.clone());
    while !w.done() {
        match w.varint()? {
            SERIES_LABEL => labels += 1,
            SERIES_CHUNK => chunks += 1,
            _ => return None,
        }
        w.len()?;
    }
    let mut s = Series {
        labels: Vec::with_capacity(labels),
        chunks: Vec::with_capacity(chunks),
    };
    let mut w = Wire::new(frame, body);
    while !w.done() {
        let key = w.varint()?;
        let field = w.len()?;
        if key == SERIES_LABEL {
            s.labels.push(label(frame, field)?);
        } else {
            s.chunks.push(aggr_chunk(frame, field)?);
        }
    }
    Some(s)
}

fn label(frame: &Bytes, body: Range<usize>) -> Option<Label> {
    let mut l = Label::default();
    let mut w = Wire::new(frame, body);
    while !w.done() {
        // a field given twice is its last, as prost reads it
        match w.varint()? {
            LABEL_NAME => l.name = frame.slice(w.len()?),
            LABEL_VALUE => l.value = frame.slice(w.len()?),
            _ => return None,
        }
    }
    Some(l)
}

fn aggr_chunk(frame: &Bytes, body: Range<usize>) -> Option<AggrChunk> {
    let mut c = AggrChunk::default();
    let mut w = Wire::new(frame, body);
    while !w.done() {
        match w.varint()? {
            AGGR_MIN_TIME => c.min_time = w.varint()? as i64,
            AGGR_MAX_TIME => c.max_time = w.varint()? as i64,
            // prost merges a message given twice: left to it
            AGGR_RAW if c.raw.is_none() => c.raw = Some(chunk(frame, w.len()?)?),
            _ => return None,
        }
    }
    Some(c)
}

fn chunk(frame: &Bytes, body: Range<usize>) -> Option<Chunk> {
    let mut c = Chunk::default();
    let mut w = Wire::new(frame, body);
    while !w.done() {
        match w.varint()? {
            // an enum, an int32: the varint's low 32 bits, as prost reads it
            CHUNK_TYPE => c.r#type = w.varint()? as i32,
            CHUNK_DATA => c.data = frame.slice(w.len()?),
            CHUNK_HASH => c.hash = w.varint()?,
            _ => return None,
        }
    }
    Some(c)
}

/// A message's fields, read from `at` to `end` of the frame.
struct Wire<'a> {
    frame: &'a [u8],
    at: usize,
    end: usize,
}

impl<'a> Wire<'a> {
    fn new(frame: &'a [u8], body: Range<usize>) -> Self {
        debug_assert!(body.start <= body.end && body.end <= frame.len());
        Wire {
            frame,
            at: body.start,
            end: body.end,
        }
    }

    fn done(&self) -> bool {
        self.at == self.end
    }

    /// A varint as protobuf writes it: at most ten bytes, the tenth 0 or 1. Keys and most
    /// lengths are one byte.
    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        match self.frame[self.at..self.end].first() {
            Some(&b) if b < 0x80 => {
                self.at += 1;
                Some(u64::from(b))
            }
            _ => self.long_varint(),
        }
    }

    fn long_varint(&mut self) -> Option<u64> {
        let mut x = 0;
        for (i, &b) in self.frame[self.at..self.end].iter().take(10).enumerate() {
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return None;
                }
                self.at += i + 1;
                return Some(x);
            }
        }
        None
    }

    /// A length-delimited field's bytes, which the reader steps over.
    fn len(&mut self) -> Option<Range<usize>> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n > self.end - self.at {
            return None;
        }
        self.at += n;
        Some(self.at - n..self.at)
    }

    fn expect(&mut self, key: u64) -> Option<()> {
        (self.varint()? == key).then_some(())
    }

    /// How many fields the message has, each of them `key` and length-delimited.
    fn count(mut self, key: u64) -> Option<usize> {
        let mut n = 0;
        while !self.done() {
            self.expect(key)?;
            self.len()?;
            n += 1;
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::proto::Any;
    use crate::store::{label, raw_chunk};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn answer(result: Answer) -> SeriesResponse {
        SeriesResponse {
            result: Some(result),
        }
    }

    fn up() -> Series {
        Series {
            labels: vec![label("__name__", "up"), label("cluster", "a")],
            chunks: vec![raw_chunk(1, 2, 1, Bytes::from_static(&[0, 1, 2, 3]))],
        }
    }

    #[test]
    fn a_frame_decodes_as_prost_decodes_it_and_counts_its_bytes() {
        let msg = answer(Answer::Series(up()));
        let encoded = msg.encode_to_vec();
        let frame = decode(encoded.clone().into()).unwrap();
        assert_eq!(frame.response, msg);
        assert_eq!(frame.bytes, encoded.len());
        let cut = decode(encoded[..encoded.len() - 1].to_vec().into())
            .err()
            .unwrap();
        assert_eq!(cut.code(), tonic::Code::Internal);
    }

    #[test]
    fn other_answers_are_left_to_prost() {
        let mut aggregate = up();
        aggregate.chunks[0].count = aggregate.chunks[0].raw.clone();
        let twice = {
            // a series given twice in one answer: prost joins them
            let mut b = answer(Answer::Series(up())).encode_to_vec();
            b.extend(answer(Answer::Series(up())).encode_to_vec());
            b
        };
        let others = [
            answer(Answer::Warning("store b is down".into())).encode_to_vec(),
            answer(Answer::Hints(Any::default())).encode_to_vec(),
            answer(Answer::Series(aggregate)).encode_to_vec(),
            twice,
            Vec::new(),
        ];
        for b in others {
            let b = Bytes::from(b);
            assert_eq!(usual(&b), None, "{b:?}");
            let want = SeriesResponse::decode(b.clone()).unwrap();
            assert_eq!(decode(b).unwrap().response, want);
        }
    }

    fn any_series() -> impl Strategy<Value = Series> {
        let pair = (vec(any::<u8>(), 0..8), vec(any::<u8>(), 0..8)).prop_map(|(n, v)| Label {
            name: n.into(),
            value: v.into(),
        });
        let chunk = (
            any::<i64>(),
            any::<i64>(),
            proptest::option::of((any::<i32>(), vec(any::<u8>(), 0..16), any::<u64>())),
        )
            .prop_map(|(min_time, max_time, raw)| AggrChunk {
                min_time,
                max_time,
                raw: raw.map(|(r#type, data, hash)| Chunk {
                    r#type,
                    data: data.into(),
                    hash,
                }),
                ..Default::default()
            });
        (vec(pair, 0..5), vec(chunk, 0..5)).prop_map(|(labels, chunks)| Series { labels, chunks })
    }

    fn any_answer() -> impl Strategy<Value = SeriesResponse> {
        prop_oneof![
            any_series().prop_map(|s| answer(Answer::Series(s))),
            vec(any_series(), 0..4)
                .prop_map(|series| answer(Answer::Batch(SeriesBatch { series }))),
        ]
    }

    proptest! {
        #[test]
        fn the_usual_answer_is_read_by_hand_as_prost_reads_it(msg in any_answer()) {
            let b = Bytes::from(msg.encode_to_vec());
            prop_assert_eq!(usual(&b), Some(msg));
        }

        #[test]
        fn a_frame_read_by_hand_is_one_prost_reads_alike(
            msg in any_answer(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let mut b = msg.encode_to_vec();
            if !b.is_empty() {
                let at = at.index(b.len());
                if cut {
                    b.truncate(at);
                } else {
                    b[at] = byte;
                }
            }
            let b = Bytes::from(b);
            if let Some(got) = usual(&b) {
                prop_assert_eq!(Ok(got), SeriesResponse::decode(b).map_err(|e| e.to_string()));
            }
        }
    }
}
