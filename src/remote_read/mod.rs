//! The Prometheus remote read client (`POST /api/v1/read`): Prometheus since 2.13 and Grafana
//! Mimir (`/prometheus/api/v1/read`) serve the stored XOR chunks over it, framed
//! (`STREAMED_XOR_CHUNKS`). It answers the StoreAPI's `Series` request with the StoreAPI's
//! `Series`, so the gRPC source evaluates it like any store: a second transport beside the
//! StoreAPI client, the gRPC source's other input.
//!
//! Like Thanos Query over sidecars: each URL (one per Prometheus of an HA pair) is asked the
//! same query, the replica labels are dropped from the answers, and the series of all of them
//! are sorted by labels into one stream, where the source joins the replicas and deduplicates
//! them. The sort is needed, not cosmetic: Prometheus sorts series by its own labels and adds
//! its external labels afterwards, which can break the order (Thanos' proxy re-sorts sidecar
//! answers for the same reason), so an answer is read whole before its first series is
//! handed on, as a sidecar's is.

mod answer;
mod convert;
pub mod frames;
pub mod proto;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use prost::Message;
use thiserror::Error;
use tokio::time::Instant;
use tracing::info;

use crate::inflight;
use crate::model::Matcher;
use crate::observe::{Secret, error_chain};
use crate::store::proto::{LabelMatcher, Series, SeriesRequest, label_matcher::Type};
use crate::store::{Limits, TlsFileError, TlsFiles, tls_hint, wait_until};
use answer::{Answer, Body, Held, decode};
use convert::Shaping;
use frames::Frames;
use proto as rr;

/// How to reach and talk to the remote read endpoints.
#[derive(Clone, Debug)]
pub struct RemoteReadConfig {
    /// Full URLs of the read endpoints, e.g. `http://prometheus:9090/api/v1/read`; several for
    /// the Prometheus of an HA pair.
    pub urls: Vec<String>,
    pub tls: TlsFiles,
    /// Deadlines (`timeout`: one request, its whole answer included) and the largest frame
    /// (or SAMPLES answer, decompressed) accepted: the StoreAPI client's.
    pub limits: Limits,
    /// Sent with every request: auth and tenant headers.
    pub headers: Vec<(String, Secret)>,
}

impl RemoteReadConfig {
    /// Defaults for these URLs: the StoreAPI client's deadlines and frame limit.
    pub fn new(urls: Vec<String>) -> Self {
        RemoteReadConfig {
            urls,
            tls: TlsFiles::default(),
            limits: Limits::default(),
            headers: Vec::new(),
        }
    }
}

/// A server's build info: Prometheus gives its version; Mimir (and other servers of the same
/// API) their application's name as well.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BuildInfo {
    #[serde(default)]
    pub application: String,
    #[serde(default)]
    pub version: String,
}

impl BuildInfo {
    /// The Prometheus major version when the server is Prometheus itself.
    pub fn prometheus_major(&self) -> Option<u32> {
        if !self.application.is_empty() {
            return None;
        }
        self.version.split('.').next()?.parse().ok()
    }
}

/// A failed remote read, classified for retries and exit codes.
#[derive(Debug, Error)]
pub enum RemoteReadError {
    #[error("invalid remote read URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("invalid HTTP header {0:?}: names must be ASCII tokens and values printable ASCII")]
    BadHeader(String),
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    #[error("cannot connect to the remote read server at {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("TLS with the remote read server at {endpoint} failed: {detail} ({hint})")]
    Tls {
        endpoint: String,
        detail: String,
        hint: &'static str,
    },
    /// Its HTTP status, a broken answer, a stall; `retryable` as the cause is (5xx, 429, a cut
    /// or corrupt stream).
    #[error("remote read from {endpoint} failed: {detail}")]
    Read {
        endpoint: String,
        detail: String,
        retryable: bool,
    },
    /// A series whose chunks are in an encoding the engine cannot read: the window's data is
    /// refused (as the StoreAPI path refuses it while decoding), not the configuration.
    #[error("series {series}: chunk encoding {encoding} is not supported")]
    Encoding { series: String, encoding: String },
}

impl RemoteReadError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoteReadError::Connect { .. } => true,
            RemoteReadError::Read { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// Remote read clients for one or more URLs; cheap to clone.
#[derive(Clone)]
pub struct RemoteReadClient {
    http: reqwest::Client,
    cfg: Arc<RemoteReadConfig>,
    /// Whether the SAMPLES fallback was logged already (once per run is enough).
    told_samples: Arc<AtomicBool>,
}

impl RemoteReadClient {
    /// A client for the configured URLs; nothing is sent until the first request.
    pub fn new(cfg: RemoteReadConfig) -> Result<Self, RemoteReadError> {
        let bad = |url: &str, reason: String| RemoteReadError::BadUrl {
            url: url.to_string(),
            reason,
        };
        if cfg.urls.is_empty() {
            return Err(bad("", "no remote read URL".into()));
        }
        for u in &cfg.urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(bad(
                    u,
                    "expected http:// or https:// and the read path, e.g. http://prometheus:9090/api/v1/read".into(),
                ));
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::try_from(k.as_str())
                .map_err(|_| RemoteReadError::BadHeader(k.clone()))?;
            let mut value = reqwest::header::HeaderValue::try_from(v.expose())
                .map_err(|_| RemoteReadError::BadHeader(k.clone()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(cfg.limits.connect_timeout)
            .tcp_nodelay(true);
        let endpoint = cfg.urls[0].clone();
        let pem = cfg.tls.read()?;
        if let Some(ca) = pem.ca {
            let cert = reqwest::Certificate::from_pem(&ca)
                .map_err(|e| bad(&endpoint, format!("CA file: {}", error_chain(&e))))?;
            builder = builder.add_root_certificate(cert);
        }
        if let Some((mut pem, key)) = pem.client {
            pem.push(b'\n');
            pem.extend(key);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                bad(
                    &endpoint,
                    format!("client certificate: {}", error_chain(&e)),
                )
            })?;
            builder = builder.identity(id);
        }
        let http = builder
            .build()
            .map_err(|e| bad(&endpoint, error_chain(&e)))?;
        Ok(RemoteReadClient {
            http,
            cfg: Arc::new(cfg),
            told_samples: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The URLs, for logs.
    pub fn urls(&self) -> &[String] {
        &self.cfg.urls
    }

    /// What serves `url`, from its build info (`<base>/api/v1/status/buildinfo` beside the
    /// read path): whose PromQL its own `query_range` speaks. `None` when it does not say.
    pub async fn build_info(&self, url: &str) -> Option<BuildInfo> {
        #[derive(serde::Deserialize)]
        struct Answer {
            data: BuildInfo,
        }
        let base = url.strip_suffix("/api/v1/read")?;
        let resp = self
            .http
            .get(format!("{base}/api/v1/status/buildinfo"))
            .timeout(self.cfg.limits.idle_timeout)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Answer>().await.ok().map(|a| a.data)
    }

    /// Every URL answers a query that selects nothing: address, TLS, auth and tenant work.
    pub async fn preflight(&self) -> Result<(), RemoteReadError> {
        let now = jiff::Timestamp::now().as_millisecond();
        let req = SeriesRequest {
            min_time: now - 60_000,
            max_time: now,
            matchers: vec![crate::store::matcher(
                Type::Eq,
                "__name__",
                "storeapi_exporter_preflight",
            )],
            ..Default::default()
        };
        self.series(req).await.map(|_| ())
    }

    /// Asks every URL for the series the StoreAPI request selects, and returns them as one
    /// stream sorted by labels (replica labels removed), as the StoreAPI would.
    ///
    /// Only the matchers a server cannot get wrong are sent: those on the metric name and
    /// equalities. Prometheus matches the others against its index, which lacks its external
    /// labels (`cluster=~"a|b"` would select nothing); every matcher is checked again on the
    /// answers.
    pub async fn series(&self, req: SeriesRequest) -> Result<RemoteReadStream, RemoteReadError> {
        let matchers = req
            .matchers
            .iter()
            .map(model_matcher)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|detail| self.error(&self.cfg.urls[0], detail, false))?;
        let query = rr::Query {
            start_timestamp_ms: req.min_time,
            end_timestamp_ms: req.max_time,
            matchers: req
                .matchers
                .iter()
                .filter(|m| {
                    m.name == "__name__" || (m.r#type == Type::Eq as i32 && !m.value.is_empty())
                })
                .map(|m| rr::LabelMatcher {
                    r#type: m.r#type,
                    name: m.name.clone(),
                    value: m.value.clone(),
                })
                .collect(),
        };
        let read = rr::ReadRequest {
            queries: vec![query],
            accepted_response_types: vec![rr::read_request::ResponseType::StreamedXorChunks as i32],
        };
        let body: Bytes = snap::raw::Encoder::new()
            .compress_vec(&read.encode_to_vec())
            .map_err(|e| self.error(&self.cfg.urls[0], format!("snappy: {e}"), false))?
            .into();
        let what = describe(&req);
        let deadline = Instant::now() + self.cfg.limits.timeout;
        let answers = futures::future::try_join_all(
            self.cfg
                .urls
                .iter()
                .map(|url| self.fetch(url, body.clone(), deadline, &what)),
        )
        .await?;
        let bytes = answers.iter().map(|(_, b)| b).sum();
        if answers
            .iter()
            .any(|(a, _)| matches!(a.body, Body::Samples(_)))
            && !self.told_samples.swap(true, Ordering::Relaxed)
        {
            info!(
                "the remote read server answered with samples, not chunks (as Cortex does): they are read, at a higher cost"
            );
        }
        let replica_labels = req.without_replica_labels;
        let max = self.cfg.limits.max_message_bytes;
        let (mint, maxt) = (req.min_time, req.max_time);
        // Decoding, cutting and sorting are CPU work: on the blocking pool.
        let series = tokio::task::spawn_blocking(move || {
            let shaping = Shaping {
                matchers: &matchers,
                replica_labels: &replica_labels,
                mint,
                maxt,
            };
            let mut out = Vec::new();
            for (a, _) in answers {
                decode(a, &shaping, max, &mut out)?;
            }
            // stable: a series a server split over several frames stays in its order
            out.sort_by(|a, b| a.cmp_labels(b));
            Ok::<_, RemoteReadError>(out)
        })
        .await
        .map_err(|e| {
            self.error(
                &self.cfg.urls[0],
                format!("decoding thread failed: {e}"),
                false,
            )
        })??;
        Ok(RemoteReadStream {
            series: series.into_iter(),
            bytes,
        })
    }

    fn error(&self, url: &str, detail: String, retryable: bool) -> RemoteReadError {
        RemoteReadError::Read {
            endpoint: url.to_string(),
            detail,
            retryable,
        }
    }

    /// Waits for `fut` until the idle timeout, or `deadline` if sooner.
    async fn wait<T>(
        &self,
        url: &str,
        deadline: Instant,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, RemoteReadError> {
        let (until, setting) = wait_until(deadline, self.cfg.limits.idle_timeout);
        let started = Instant::now();
        tokio::time::timeout_at(until, fut).await.map_err(|_| {
            self.error(
                url,
                format!(
                    "received nothing for {}s ({setting}): the server is frozen, overloaded or unreachable",
                    started.elapsed().as_secs()
                ),
                true,
            )
        })
    }

    /// A request that failed before an answer: TLS is a configuration problem, the rest
    /// (refused, reset, unreachable) an outage to retry.
    fn transport_error(&self, url: &str, e: &reqwest::Error) -> RemoteReadError {
        let detail = error_chain(e);
        match tls_hint(url, &detail) {
            Some(hint) => RemoteReadError::Tls {
                endpoint: url.to_string(),
                detail,
                hint,
            },
            None if e.is_connect() => RemoteReadError::Connect {
                endpoint: url.to_string(),
                detail,
            },
            None => self.error(url, detail, true),
        }
    }

    /// POSTs the request to one URL and reads its whole answer; also the bytes received.
    async fn fetch(
        &self,
        url: &str,
        body: Bytes,
        deadline: Instant,
        what: &str,
    ) -> Result<(Answer, u64), RemoteReadError> {
        let call = inflight::start("remote-read", url, what.to_string());
        let send = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body)
            .send();
        let mut resp = self
            .wait(url, deadline, send)
            .await?
            .map_err(|e| self.transport_error(url, &e))?;
        call.progress();
        let status = resp.status();
        if !status.is_success() {
            let text = match self.wait(url, deadline, resp.text()).await {
                Ok(Ok(t)) => t.trim().chars().take(512).collect::<String>(),
                _ => String::new(),
            };
            let retryable = status.is_server_error() || status.as_u16() == 429;
            return Err(self.error(
                url,
                format!("HTTP {status}: {text}{}", status_hint(status.as_u16())),
                retryable,
            ));
        }
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let streamed = ctype.starts_with("application/x-streamed-protobuf");
        if !streamed && !ctype.starts_with("application/x-protobuf") {
            return Err(self.error(
                url,
                format!(
                    "the answer is {ctype:?}, not a remote read answer: {}",
                    NOT_REMOTE_READ
                ),
                false,
            ));
        }
        let max = self.cfg.limits.max_message_bytes;
        let mut frames = Frames::new(max);
        let mut raw = BytesMut::new();
        let mut bytes = 0u64;
        loop {
            let piece = self.wait(url, deadline, resp.chunk()).await?.map_err(|e| {
                self.error(
                    url,
                    format!(
                        "the answer was cut after {} frames: {}",
                        frames.count(),
                        error_chain(&e)
                    ),
                    true,
                )
            })?;
            let Some(piece) = piece else { break };
            call.progress();
            bytes += piece.len() as u64;
            if streamed {
                frames.extend(&piece);
            } else if raw.len() + piece.len() > max {
                return Err(self.error(
                    url,
                    format!(
                        "the samples answer is larger than {max} bytes (GRPC_MAX_MESSAGE_BYTES)"
                    ),
                    false,
                ));
            } else {
                raw.extend_from_slice(&piece);
            }
        }
        let body = if streamed {
            Body::Frames(frames.finish().map_err(|d| self.error(url, d, true))?)
        } else {
            Body::Samples(raw.freeze())
        };
        let answer = Answer {
            url: url.to_string(),
            body,
        };
        Ok((answer, bytes))
    }
}

const NOT_REMOTE_READ: &str = "Prometheus serves remote read at /api/v1/read, Mimir at /prometheus/api/v1/read; Thanos Query and VictoriaMetrics serve none (use --source grpc or --source http)";

/// What to check for an HTTP status that will not change on retry.
fn status_hint(status: u16) -> String {
    match status {
        401 | 403 => {
            " (check the credentials, and the tenant: Mimir needs PROMETHEUS_X_SCOPE_ORGID)".into()
        }
        404 | 405 => format!(" ({NOT_REMOTE_READ})"),
        _ => String::new(),
    }
}

/// A StoreAPI matcher as the engine's, to check answers with.
fn model_matcher(m: &LabelMatcher) -> Result<Matcher, String> {
    let regex = |negate| {
        Matcher::regex(&m.name, &m.value, negate).map_err(|e| format!("matcher {}: {e}", m.name))
    };
    Ok(match Type::try_from(m.r#type) {
        Ok(Type::Eq) => Matcher::eq(&m.name, &m.value),
        Ok(Type::Neq) => Matcher {
            kind: crate::model::MatchKind::Neq,
            name: m.name.clone(),
            value: m.value.clone(),
        },
        Ok(Type::Re) => regex(false)?,
        Ok(Type::Nre) => regex(true)?,
        Err(_) => return Err(format!("matcher {}: unknown type {}", m.name, m.r#type)),
    })
}

/// A request for logs: its matchers and range.
fn describe(req: &SeriesRequest) -> String {
    let matchers: Vec<String> = req
        .matchers
        .iter()
        .filter_map(|m| model_matcher(m).ok())
        .map(|m| m.to_string())
        .collect();
    format!(
        "read {{{}}} [{}, {}]",
        matchers.join(", "),
        req.min_time,
        req.max_time
    )
}

/// The series of one request, sorted by labels.
pub struct RemoteReadStream {
    series: std::vec::IntoIter<Held>,
    bytes: u64,
}

/// The answers were read whole: the series are in memory, each made a `Series` when its turn
/// comes.
impl Iterator for RemoteReadStream {
    type Item = Series;

    fn next(&mut self) -> Option<Series> {
        self.series.next().map(Held::into_series)
    }
}

impl RemoteReadStream {
    /// Bytes received (all URLs).
    pub fn bytes_received(&self) -> u64 {
        self.bytes
    }
}
