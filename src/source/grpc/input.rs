//! Where the gRPC source reads raw series from: the one seam both transports implement, a
//! StoreAPI endpoint (`store`) or Prometheus remote read (`remote_read`). Both answer a
//! StoreAPI `SeriesRequest` with StoreAPI `Series` in label order.

use crate::remote_read::{RemoteReadClient, RemoteReadStream};
use crate::source::SourceError;
use crate::store::proto::{Series, SeriesRequest};
use crate::store::{SeriesStream, StoreClient};

/// A StoreAPI endpoint or remote read.
#[derive(Clone)]
pub enum SeriesClient {
    Store(Box<StoreClient>),
    RemoteRead(RemoteReadClient),
}

impl From<StoreClient> for SeriesClient {
    fn from(c: StoreClient) -> Self {
        SeriesClient::Store(Box::new(c))
    }
}

impl From<RemoteReadClient> for SeriesClient {
    fn from(c: RemoteReadClient) -> Self {
        SeriesClient::RemoteRead(c)
    }
}

impl SeriesClient {
    /// Opens the series of a StoreAPI `Series` request.
    pub async fn series(&self, req: SeriesRequest) -> Result<ClientStream, SourceError> {
        Ok(match self {
            SeriesClient::Store(c) => ClientStream::Store(Box::new(c.series(req).await?)),
            SeriesClient::RemoteRead(c) => ClientStream::RemoteRead(c.series(req).await?),
        })
    }

    /// The values of `label` among the series with data in `[start, end]` (ms); `None` when
    /// the transport cannot tell, and requests are then not narrowed by them.
    ///
    /// Remote read has no label values call, and the server's HTTP API is no substitute:
    /// Prometheus' `/api/v1/label/<name>/values` does not know its external labels, where the
    /// cluster label usually is, so requests narrowed by its answer would select nothing. A
    /// StoreAPI endpoint may not implement LabelValues either.
    pub async fn label_values(
        &self,
        label: &str,
        start: i64,
        end: i64,
    ) -> Result<Option<Vec<String>>, SourceError> {
        match self {
            SeriesClient::Store(c) => match c.label_values(label, start, end).await {
                Ok(values) => Ok(Some(values)),
                Err(e) if e.is_unimplemented() => Ok(None),
                Err(e) => Err(e.into()),
            },
            SeriesClient::RemoteRead(_) => Ok(None),
        }
    }
}

/// The series of one request, from either transport.
pub enum ClientStream {
    Store(Box<SeriesStream>),
    RemoteRead(RemoteReadStream),
}

impl ClientStream {
    /// The next series; `Ok(None)` at the clean end.
    pub async fn next(&mut self) -> Result<Option<Series>, SourceError> {
        match self {
            ClientStream::Store(s) => Ok(s.next().await?),
            ClientStream::RemoteRead(s) => Ok(s.next()),
        }
    }

    /// Bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        match self {
            ClientStream::Store(s) => s.bytes_received(),
            ClientStream::RemoteRead(s) => s.bytes_received(),
        }
    }
}
