//! The `Series` call's answer, decoded frame by frame from the buffer each frame arrived in:
//! prost reads a contiguous `Bytes` with a slice's bounds where tonic's own decoder hands it
//! a view that re-checks the frame's end at every field (a day's answer is millions of
//! labels and chunks), and the frame's size is known without encoding the message again.

use bytes::Buf;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{GrpcMethod, Request, Status, Streaming};
use tonic_prost::ProstCodec;

use super::proto::{SeriesRequest, SeriesResponse};

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

fn decode(frame: bytes::Bytes) -> Result<Frame, Status> {
    let bytes = frame.len();
    let response = SeriesResponse::decode(frame)
        // as tonic's own decoder answers a frame that is no message
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(Frame { response, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::proto::{Series, series_response};
    use crate::store::{label, raw_chunk};

    #[test]
    fn a_frame_decodes_as_prost_decodes_it_and_counts_its_bytes() {
        let series = Series {
            labels: vec![label("__name__", "up"), label("cluster", "a")],
            chunks: vec![raw_chunk(1, 2, 1, bytes::Bytes::from_static(&[0, 1, 2, 3]))],
        };
        let msg = SeriesResponse {
            result: Some(series_response::Result::Series(series)),
        };
        let encoded = msg.encode_to_vec();
        let frame = decode(encoded.clone().into()).unwrap();
        assert_eq!(frame.response, msg);
        assert_eq!(frame.bytes, encoded.len());
        let cut = decode(encoded[..encoded.len() - 1].to_vec().into())
            .err()
            .unwrap();
        assert_eq!(cut.code(), tonic::Code::Internal);
    }
}
