//! The Thanos StoreAPI client: `thanos.Store/Series` for data, `thanos.info.Info/Info` for the
//! preflight check.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use thiserror::Error;

use crate::inflight;
use crate::observe::{Secret, error_chain};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

mod frame;
pub mod proto;
pub mod tls;

use proto::store_client::StoreClient as RawStoreClient;
use proto::{SeriesRequest, series_response};
pub use tls::{TlsFileError, TlsFiles, tls_hint};

/// How long a call may take and how large its frames may be: the defaults of every transport
/// (StoreAPI, remote read), and of the flags that set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deadline of one call, its whole answer included (sent to a StoreAPI server as
    /// `grpc-timeout` and enforced here too: a frozen server cannot enforce it).
    pub timeout: Duration,
    /// How long a call may receive nothing (no answer, no frame) before it fails: a frozen or
    /// cut-off peer is noticed in this time rather than at the whole call's deadline.
    pub idle_timeout: Duration,
    /// How long to wait for the connection itself.
    pub connect_timeout: Duration,
    /// Largest decoded response frame accepted.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    /// 2 minute deadline, 60 s idle, 10 s connect, 64 MiB frames.
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_message_bytes: 64 << 20,
        }
    }
}

/// How to reach and talk to a StoreAPI endpoint.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `http://host:port`, or `https://host:port` for TLS.
    pub endpoint: String,
    pub tls: TlsFiles,
    /// Server name to verify, when it differs from the endpoint's host.
    pub tls_server_name: Option<String>,
    pub limits: Limits,
    /// Ask the server to gzip responses.
    pub gzip: bool,
    /// Sent with every call: auth and tenant headers.
    pub metadata: Vec<(String, Secret)>,
}

impl StoreConfig {
    /// Defaults for an endpoint: [`Limits::default`], no TLS files.
    pub fn new(endpoint: impl Into<String>) -> Self {
        StoreConfig {
            endpoint: endpoint.into(),
            tls: TlsFiles::default(),
            tls_server_name: None,
            limits: Limits::default(),
            gzip: false,
            metadata: Vec::new(),
        }
    }
}

/// A failed StoreAPI call, classified for retries and exit codes.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("invalid StoreAPI endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    #[error(
        "invalid gRPC metadata {0:?}: names must be lowercase ASCII and values printable ASCII"
    )]
    BadMetadata(String),
    #[error("cannot connect to the StoreAPI at {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("TLS with the StoreAPI at {endpoint} failed: {detail} ({hint})")]
    Tls {
        endpoint: String,
        detail: String,
        hint: &'static str,
    },
    #[error("StoreAPI call {call} to {endpoint} failed: {code:?}: {message}")]
    Status {
        call: &'static str,
        endpoint: String,
        code: Code,
        message: String,
    },
    #[error(
        "StoreAPI call {call} to {endpoint} received nothing for {}s ({setting}): the endpoint is frozen, overloaded or unreachable", waited.as_secs()
    )]
    Stalled {
        call: &'static str,
        endpoint: String,
        waited: Duration,
        setting: &'static str,
    },
    #[error(
        "StoreAPI returned a warning, the data would be partial: {0} (partial data is never exported)"
    )]
    Warning(String),
}

impl StoreError {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Status { code, .. } => retryable_code(*code),
            StoreError::Stalled { .. } => true,
            // A warning means a store behind the Querier failed; it may be back next time.
            StoreError::Warning(_) => true,
            _ => false,
        }
    }

    /// The endpoint does not serve this call (an older or narrower StoreAPI).
    pub fn is_unimplemented(&self) -> bool {
        matches!(
            self,
            StoreError::Status {
                code: Code::Unimplemented,
                ..
            }
        )
    }

    /// A failed call. With TLS 1.3 the server checks the client certificate after the
    /// handshake, so an mTLS refusal arrives on the first call, not on connect: it is a
    /// configuration error with a hint, not an outage to retry.
    fn status(call: &'static str, endpoint: &str, s: Status) -> Self {
        let message = error_chain(&s);
        match tls_hint(endpoint, &message) {
            Some(hint) => StoreError::Tls {
                endpoint: endpoint.to_string(),
                detail: message,
                hint,
            },
            None => StoreError::Status {
                call,
                endpoint: endpoint.to_string(),
                code: s.code(),
                message,
            },
        }
    }
}

/// gRPC codes worth retrying: the server was busy, unreachable or cut the stream. Never
/// InvalidArgument, PermissionDenied, Unauthenticated, Unimplemented: the same call fails again.
pub fn retryable_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Cancelled
            | Code::Internal
            | Code::Unknown
    )
}

/// A connected StoreAPI client; cheap to clone (the channel is shared).
#[derive(Clone)]
pub struct StoreClient {
    channel: Channel,
    cfg: StoreConfig,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
}

/// When a call waiting since now gives up, and the setting that decides it: the idle timeout
/// (nothing arrived for that long), or the request's deadline if sooner.
pub(crate) fn wait_until(deadline: Instant, idle_timeout: Duration) -> (Instant, &'static str) {
    let idle = Instant::now() + idle_timeout;
    if deadline < idle {
        (deadline, "QUERY_TIMEOUT")
    } else {
        (idle, "QUERY_IDLE_TIMEOUT")
    }
}

impl StoreClient {
    /// Connects to the endpoint (TLS when it is `https://`).
    pub async fn connect(cfg: StoreConfig) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::BadEndpoint {
            endpoint: cfg.endpoint.clone(),
            reason,
        };
        if !(cfg.endpoint.starts_with("http://") || cfg.endpoint.starts_with("https://")) {
            return Err(bad(
                "expected http://host:port or https://host:port (e.g. http://thanos-query:10901)"
                    .into(),
            ));
        }
        let mut ep = Endpoint::from_shared(cfg.endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(cfg.limits.connect_timeout)
            .tcp_nodelay(true)
            .http2_adaptive_window(true);
        if cfg.endpoint.starts_with("https://") {
            let pem = cfg.tls.read()?;
            let mut tls = match pem.ca {
                Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            if let Some((cert, key)) = pem.client {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &cfg.tls_server_name {
                tls = tls.domain_name(name.clone());
            }
            ep = ep.tls_config(tls).map_err(|e| bad(error_chain(&e)))?;
        }
        let channel = ep.connect().await.map_err(|e| {
            let detail = error_chain(&e);
            match tls_hint(&cfg.endpoint, &detail) {
                Some(hint) => StoreError::Tls {
                    endpoint: cfg.endpoint.clone(),
                    detail,
                    hint,
                },
                None => StoreError::Connect {
                    endpoint: cfg.endpoint.clone(),
                    detail,
                },
            }
        })?;
        let metadata = cfg
            .metadata
            .iter()
            .map(|(k, v)| {
                let key = k
                    .parse::<AsciiMetadataKey>()
                    .map_err(|_| StoreError::BadMetadata(k.clone()))?;
                let value = v
                    .expose()
                    .parse::<AsciiMetadataValue>()
                    .map_err(|_| StoreError::BadMetadata(k.clone()))?;
                Ok((key, value))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(StoreClient {
            channel,
            cfg,
            metadata,
        })
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(timeout);
        for (k, v) in &self.metadata {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        req
    }

    /// The channel as a `Series` call uses it, with the limits and compression of `raw`.
    fn grpc(&self) -> tonic::client::Grpc<Channel> {
        let mut c = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(self.cfg.limits.max_message_bytes);
        if self.cfg.gzip {
            c = c.accept_compressed(CompressionEncoding::Gzip);
        }
        c
    }

    fn raw(&self) -> RawStoreClient<Channel> {
        let mut c = RawStoreClient::new(self.channel.clone())
            .max_decoding_message_size(self.cfg.limits.max_message_bytes);
        if self.cfg.gzip {
            c = c.accept_compressed(CompressionEncoding::Gzip);
        }
        c
    }

    /// Waits for `fut` (a call's answer) until the idle timeout, or `deadline` if sooner.
    async fn answer<T>(
        &self,
        call: &'static str,
        deadline: Instant,
        fut: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, StoreError> {
        let (until, setting) = wait_until(deadline, self.cfg.limits.idle_timeout);
        let started = Instant::now();
        match tokio::time::timeout_at(until, fut).await {
            Ok(r) => r.map_err(|s| StoreError::status(call, &self.cfg.endpoint, s)),
            Err(_) => Err(StoreError::Stalled {
                call,
                endpoint: self.cfg.endpoint.clone(),
                waited: started.elapsed(),
                setting,
            }),
        }
    }

    /// The endpoint's identity and time range (`thanos.info.Info/Info`); a small call, so it
    /// gets the idle timeout as its deadline.
    pub async fn info(&self) -> Result<proto::info::InfoResponse, StoreError> {
        let _call = inflight::start("storeapi", &self.cfg.endpoint, "Info".into());
        let timeout = self.cfg.limits.idle_timeout.min(self.cfg.limits.timeout);
        let mut c = proto::info::info_client::InfoClient::new(self.channel.clone());
        let req = self.request(proto::info::InfoRequest {}, timeout);
        self.answer("Info", Instant::now() + timeout, c.info(req))
            .await
            .map(|r| r.into_inner())
            .map_err(|e| self.without_client_certificate(e))
    }

    /// A server that requires a client certificate refuses it after the TLS 1.3 handshake;
    /// whether the client then reads the alert (`CertificateRequired`) or only finds the
    /// connection closed under its first request is a race. Info is the first call: on a TLS
    /// endpoint without a client certificate, a connection closed right after a successful
    /// handshake is that refusal, not an outage.
    fn without_client_certificate(&self, e: StoreError) -> StoreError {
        let StoreError::Status { message, .. } = &e else {
            return e;
        };
        if self.cfg.endpoint.starts_with("https://")
            && self.cfg.tls.client_cert.is_none()
            && closed_after_handshake(message)
        {
            return StoreError::Tls {
                endpoint: self.cfg.endpoint.clone(),
                detail: message.clone(),
                hint: "the server closed the connection right after the TLS handshake, as a server that requires a client certificate (mTLS) does: set TLS_CERT_FILE and TLS_KEY_FILE",
            };
        }
        e
    }

    /// The values of `label` among the series with data in `[start, end]` (ms), partial
    /// responses refused. A warning is an error: a store that did not answer may hold more
    /// values.
    pub async fn label_values(
        &self,
        label: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, StoreError> {
        let req = proto::LabelValuesRequest {
            label: label.to_string(),
            partial_response_disabled: true,
            partial_response_strategy: proto::PartialResponseStrategy::Abort as i32,
            start,
            end,
            matchers: Vec::new(),
        };
        let _call = inflight::start(
            "storeapi",
            &self.cfg.endpoint,
            format!("LabelValues {label} [{start}, {end}]"),
        );
        let deadline = Instant::now() + self.cfg.limits.timeout;
        let mut raw = self.raw();
        let req = self.request(req, self.cfg.limits.timeout);
        let resp = self
            .answer("LabelValues", deadline, raw.label_values(req))
            .await?
            .into_inner();
        if let Some(w) = resp.warnings.into_iter().next() {
            return Err(StoreError::Warning(w));
        }
        Ok(resp.values)
    }

    /// Opens a `Series` stream. Partial responses are always refused (ABORT): a store that
    /// fails fails the call instead of silently dropping its data.
    /// The whole stream must arrive within the call's deadline, and no wait for a frame may
    /// exceed the idle timeout (tonic enforces `grpc-timeout` only until the answer's headers).
    pub async fn series(&self, mut req: SeriesRequest) -> Result<SeriesStream, StoreError> {
        req.partial_response_disabled = true;
        req.partial_response_strategy = proto::PartialResponseStrategy::Abort as i32;
        let call = inflight::start("storeapi", &self.cfg.endpoint, describe_series(&req));
        let deadline = Instant::now() + self.cfg.limits.timeout;
        let req = self.request(req, self.cfg.limits.timeout);
        let stream = self
            .answer("Series", deadline, frame::series(self.grpc(), req))
            .await?;
        call.progress();
        Ok(SeriesStream {
            client: self.clone(),
            inner: stream,
            pending: VecDeque::new(),
            bytes: 0,
            deadline,
            call,
        })
    }
}

/// A Series request for logs: its matchers and time range.
fn describe_series(req: &SeriesRequest) -> String {
    let ops = ["=", "!=", "=~", "!~"];
    let matchers: Vec<String> = req
        .matchers
        .iter()
        .map(|m| {
            let op = ops.get(m.r#type as usize).copied().unwrap_or("?");
            format!("{}{op}{:?}", m.name, m.value)
        })
        .collect();
    format!(
        "Series {{{}}} [{}, {}]",
        matchers.join(", "),
        req.min_time,
        req.max_time
    )
}

/// The series of one `Series` call, one at a time, batches flattened.
pub struct SeriesStream {
    client: StoreClient,
    inner: tonic::Streaming<frame::Frame>,
    pending: VecDeque<proto::Series>,
    bytes: u64,
    deadline: Instant,
    call: inflight::Call,
}

impl SeriesStream {
    /// The next series; `Ok(None)` at the clean end of the stream. A warning frame is an
    /// error: the answer would be partial.
    pub async fn next(&mut self) -> Result<Option<proto::Series>, StoreError> {
        loop {
            if let Some(s) = self.pending.pop_front() {
                return Ok(Some(s));
            }
            let msg = self
                .client
                .answer("Series", self.deadline, self.inner.message())
                .await?;
            let Some(frame) = msg else { return Ok(None) };
            self.call.progress();
            self.bytes += frame.bytes as u64;
            match frame.response.result {
                Some(series_response::Result::Series(s)) => return Ok(Some(s)),
                Some(series_response::Result::Batch(b)) => self.pending.extend(b.series),
                Some(series_response::Result::Warning(w)) => return Err(StoreError::Warning(w)),
                Some(series_response::Result::Hints(_)) | None => {}
            }
        }
    }

    /// Encoded bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes
    }
}

/// A chunk of raw data (`r#type`: its encoding), between its first and last sample times.
pub fn raw_chunk(
    min_time: i64,
    max_time: i64,
    r#type: i32,
    data: bytes::Bytes,
) -> proto::AggrChunk {
    proto::AggrChunk {
        min_time,
        max_time,
        raw: Some(proto::Chunk {
            r#type,
            data,
            hash: 0,
        }),
        ..Default::default()
    }
}

/// A label of a `Series`.
pub fn label(name: impl Into<String>, value: impl Into<String>) -> proto::Label {
    proto::Label {
        name: name.into().into(),
        value: value.into().into(),
    }
}

impl proto::Label {
    /// The name and value as text, `None` when either is not UTF-8. Thanos declares them
    /// strings; they are read as bytes to borrow them from the received frame.
    pub fn text(&self) -> Option<(&str, &str)> {
        Some((
            std::str::from_utf8(&self.name).ok()?,
            std::str::from_utf8(&self.value).ok()?,
        ))
    }

    /// The name and value for a message, invalid UTF-8 replaced.
    pub fn lossy(&self) -> (String, String) {
        (
            String::from_utf8_lossy(&self.name).into_owned(),
            String::from_utf8_lossy(&self.value).into_owned(),
        )
    }
}

/// A label matcher for a `SeriesRequest`.
pub fn matcher(kind: proto::label_matcher::Type, name: &str, value: &str) -> proto::LabelMatcher {
    proto::LabelMatcher {
        r#type: kind as i32,
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// How a connection the server closed under the first request reads: a broken pipe, a reset,
/// a closed connection, an early EOF, or (closed before hyper dispatched the request) a
/// cancelled call on a connection that "was not ready"; which one is a race.
fn closed_after_handshake(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "broken pipe",
        "connection reset",
        "connection closed",
        "unexpected eof",
        "connection was not ready",
    ]
    .iter()
    .any(|c| m.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes_follow_the_spec() {
        for c in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::ResourceExhausted,
        ] {
            assert!(retryable_code(c), "{c:?}");
        }
        for c in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Unimplemented,
        ] {
            assert!(!retryable_code(c), "{c:?}");
        }
    }

    #[test]
    fn every_way_a_refused_handshake_reads_is_a_closed_connection() {
        // As seen from a Thanos Query that requires client certificates, one per race outcome.
        for m in [
            "status: Unavailable, message: \"error trying to connect: Broken pipe (os error 32)\"",
            "status: Unknown, message: \"transport error\", source: Connection reset by peer",
            "status: Unavailable, message: \"connection closed before message completed\"",
            "status: Unknown, message: \"tls handshake eof\": unexpected EOF",
            "status: Cancelled, message: \"operation was canceled\", source: tonic::transport::Error(Transport, hyper::Error(Canceled, \"connection was not ready\"))",
        ] {
            assert!(closed_after_handshake(m), "{m}");
        }
        for m in [
            "status: Unavailable, message: \"tcp connect error: Connection refused (os error 111)\"",
            "status: DeadlineExceeded, message: \"Timeout expired\"",
        ] {
            assert!(!closed_after_handshake(m), "an outage: {m}");
        }
    }
}
