//! A fault-injecting StoreAPI for what a real Thanos will not do on demand: chunks of an
//! encoding we do not read, a stream cut in the middle, a warning frame.

use std::pin::Pin;

use futures::Stream;
use storeapi_exporter::chunk::encode;
use storeapi_exporter::store::label;
use storeapi_exporter::store::proto::store_server::{Store, StoreServer};
use storeapi_exporter::store::proto::{
    AggrChunk, Chunk, SeriesRequest, SeriesResponse, chunk::Encoding, series_response,
};
use tonic::{Request, Response, Status};

#[derive(Clone, Copy)]
pub enum Script {
    /// Every series comes with a native-histogram chunk.
    HistogramChunk,
    /// Requests whose range starts at or after this time (ms) get one series, then the
    /// stream fails.
    CutFrom(i64),
    /// Requests whose range reaches this time (ms) get one series, then the stream fails.
    CutReaching(i64),
    /// One series, then a warning frame (a store behind the proxy failed).
    Warning,
}

struct Fake(Script);

fn series(name: &str, min: i64, max: i64, encoding: Encoding) -> SeriesResponse {
    let labels = [
        ("__name__", name),
        ("cluster", "fake"),
        ("container", "app"),
        ("namespace", "ns"),
        ("node", "n1"),
        ("pod", "p1"),
        ("resource", "cpu"),
        ("unit", "core"),
    ];
    let first = min - min.rem_euclid(30_000) + 30_000;
    let samples: Vec<_> = (0..)
        .map(|i| (first + i * 30_000, 1.0 + i as f64))
        .take_while(|s| s.0 <= max)
        .collect();
    SeriesResponse {
        result: Some(series_response::Result::Series(
            storeapi_exporter::store::proto::Series {
                labels: labels.iter().map(|&(n, v)| label(n, v)).collect(),
                chunks: vec![AggrChunk {
                    min_time: samples[0].0,
                    max_time: samples[samples.len() - 1].0,
                    raw: Some(Chunk {
                        r#type: encoding as i32,
                        data: encode(&samples).into(),
                        hash: 0,
                    }),
                    ..Default::default()
                }],
            },
        )),
    }
}

#[tonic::async_trait]
impl Store for Fake {
    type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

    async fn label_values(
        &self,
        _: Request<storeapi_exporter::store::proto::LabelValuesRequest>,
    ) -> Result<Response<storeapi_exporter::store::proto::LabelValuesResponse>, Status> {
        Err(Status::unimplemented("the fake serves Series only"))
    }

    async fn series(
        &self,
        req: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let r = req.into_inner();
        let name = r
            .matchers
            .iter()
            .find(|m| m.name == "__name__")
            .map(|m| m.value.clone())
            .unwrap_or_default();
        let ok = series(&name, r.min_time, r.max_time, Encoding::Xor);
        let frames: Vec<Result<SeriesResponse, Status>> = match self.0 {
            Script::HistogramChunk => vec![Ok(series(
                &name,
                r.min_time,
                r.max_time,
                Encoding::Histogram,
            ))],
            Script::CutFrom(t) if r.min_time >= t => vec![
                Ok(ok),
                Err(Status::unavailable("connection reset by peer (injected)")),
            ],
            Script::CutReaching(t) if r.max_time >= t => vec![
                Ok(ok),
                Err(Status::unavailable("connection reset by peer (injected)")),
            ],
            Script::CutFrom(_) | Script::CutReaching(_) => vec![Ok(ok)],
            Script::Warning => vec![
                Ok(ok),
                Ok(SeriesResponse {
                    result: Some(series_response::Result::Warning(
                        "store 10.0.0.7:10901 unavailable (injected)".into(),
                    )),
                }),
            ],
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(frames))))
    }
}

/// Serves `script` on an ephemeral loopback port; returns its `http://` endpoint.
pub async fn start(script: Script) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(StoreServer::new(Fake(script)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}
