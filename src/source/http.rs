//! The catalog evaluated by Thanos Query (or any Prometheus-compatible API) over HTTP
//! `query_range`: the fallback, the correctness oracle and the benchmark baseline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::info;

use super::part::{Part, Parts, Rendered, send};
use super::{Evaluated, SourceError, Stats, catalog_steps, name_results};
use crate::catalog::{Catalog, Entry};
use crate::inflight;
use crate::model::{Labels, Series, Steps};
use crate::observe::{Secret, error_chain};
use crate::query_range::{self, Refusal};
use crate::remote_read::BuildInfo;
use crate::store::{TlsFileError, TlsFiles};

/// How to reach the HTTP API (`--source http`, and the readiness probe of any source).
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Base URL, e.g. `http://thanos-query:10902`, without a trailing slash.
    pub base: String,
    /// Auth and tenant headers, sent with every request.
    pub headers: Vec<(String, Secret)>,
    /// CA bundle to verify the API with, instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Deadline of one query with its whole answer (Thanos sends nothing until a query is
    /// evaluated, so a shorter idle deadline would cut slow but healthy queries).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Path of the readiness endpoint, probed before any work when an HTTP address was given.
    pub readiness_path: Option<String>,
}

/// Attempts of the readiness probe, `READINESS_PAUSE` apart, each within `READINESS_TIMEOUT`
/// (or QUERY_TIMEOUT if shorter).
pub const READINESS_ATTEMPTS: u32 = 3;
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(10);
pub const READINESS_PAUSE: Duration = Duration::from_secs(2);

/// Evaluates the catalog with `query_range` requests.
#[derive(Clone)]
pub struct HttpSource {
    client: reqwest::Client,
    base: String,
    catalog: Arc<Catalog>,
    step: i64,
    time_frame: i64,
    concurrency: usize,
    timeout: Duration,
}

/// Errors building the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    #[error("invalid HTTP header {0:?}: {1}")]
    Header(String, String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    #[error("CA file {0}: {1}")]
    Ca(String, String),
}

impl HttpSettings {
    /// The API's HTTP client: the headers on every request (marked sensitive, so they are
    /// never logged), the CA file when given, and deadlines for the connection and for each
    /// request with its whole answer (`timeout`).
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, HttpConfigError> {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|e| HttpConfigError::Header(k.clone(), e.to_string()))?;
            let mut value = HeaderValue::try_from(v.expose())
                .map_err(|e| HttpConfigError::Header(k.clone(), e.to_string()))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(map)
            .timeout(timeout)
            .connect_timeout(self.connect_timeout);
        let tls = TlsFiles {
            ca_file: self.ca_file.clone(),
            client_cert: None,
        };
        if let Some(pem) = tls.read()?.ca {
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                let path = self.ca_file.as_deref().unwrap_or(Path::new(""));
                HttpConfigError::Ca(path.display().to_string(), e.to_string())
            })?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build()
            .map_err(|e| HttpConfigError::Client(e.to_string()))
    }

    /// Waits until the readiness endpoint answers 2xx, trying `READINESS_ATTEMPTS` times; the
    /// last failure otherwise. Nothing to wait for without a readiness path.
    pub async fn wait_ready(&self) -> Result<(), ReadinessError> {
        let Some(path) = &self.readiness_path else {
            return Ok(());
        };
        let client = self.client(READINESS_TIMEOUT.min(self.timeout))?;
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 1..=READINESS_ATTEMPTS {
            let _call = inflight::start("http", &url, "GET (readiness)".into());
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    info!(url, "http api ready");
                    return Ok(());
                }
                Ok(r) => last = format!("{url} answered HTTP {}", r.status()),
                Err(e) => last = format!("{url}: {}", error_chain(&e)),
            }
            if attempt < READINESS_ATTEMPTS {
                tokio::time::sleep(READINESS_PAUSE).await;
            }
        }
        Err(ReadinessError::NotReady(last))
    }

    /// What serves the API, from its `/api/v1/status/buildinfo` (Thanos Query, Prometheus and
    /// Mimir all answer it); `None` when there is no known address or it does not say.
    pub async fn build_info(&self) -> Option<BuildInfo> {
        #[derive(serde::Deserialize)]
        struct Answer {
            data: BuildInfo,
        }
        self.readiness_path.as_ref()?;
        let client = self.client(READINESS_TIMEOUT.min(self.timeout)).ok()?;
        let url = format!("{}/api/v1/status/buildinfo", self.base);
        let resp = client.get(&url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Answer>().await.ok().map(|a| a.data)
    }
}

/// The HTTP API did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error(transparent)]
    Config(#[from] HttpConfigError),
    #[error(
        "the HTTP API is not ready: {0} (check PROMETHEUS_URL or SCHEME/HOSTNAME/PORT/PATH_PREFIX, and METRICS_READINESS_PATH)"
    )]
    NotReady(String),
}

impl HttpSource {
    /// A source querying the API `settings` describe, each window's entries at `step`
    /// seconds, `concurrency` queries at a time.
    pub fn new(
        settings: &HttpSettings,
        catalog: Arc<Catalog>,
        step: i64,
        time_frame: i64,
        concurrency: usize,
    ) -> Result<Self, HttpConfigError> {
        Ok(HttpSource {
            client: settings.client(settings.timeout)?,
            base: settings.base.trim_end_matches('/').to_string(),
            catalog,
            step,
            time_frame,
            concurrency: concurrency.max(1),
            timeout: settings.timeout,
        })
    }

    /// The catalog evaluated.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Evaluates every catalog entry over the windows starting at `starts` (seconds), one
    /// `query_range` per entry and window as Finout's exporter asks them, `concurrency` at a
    /// time; each answer is sent to `parts` as it arrives, so no more than `concurrency`
    /// answers are held.
    pub async fn evaluate_windows(
        &self,
        starts: &[i64],
        parts: Parts,
    ) -> Result<Stats, SourceError> {
        let queries = starts.iter().flat_map(|&start| {
            catalog_steps(&self.catalog, start, self.time_frame, self.step)
                .into_iter()
                .enumerate()
                .map(move |(entry, steps)| (start, entry, steps))
        });
        let parts = &parts;
        let mut runs = futures::stream::iter(queries.map(|(window, entry, steps)| async move {
            let e = &self.catalog.entries[entry];
            let (series, stats) = self.query_range(&e.name, &e.expr, steps).await?;
            let part = Part {
                window,
                entry,
                steps,
                series,
                rendered: Rendered::untracked(),
            };
            send(parts, part).await?;
            Ok::<_, SourceError>(stats)
        }))
        .buffer_unordered(self.concurrency);
        let mut stats = Stats::default();
        while let Some(done) = runs.next().await {
            stats += done?;
        }
        Ok(stats)
    }

    /// Evaluates every catalog entry as an instant query (`/api/v1/query`) at `t` (seconds).
    pub async fn evaluate_instant(&self, t: i64) -> Result<Evaluated, SourceError> {
        self.evaluate_each(|_, e| self.query_instant(&e.name, &e.expr, t))
            .await
    }

    /// Runs `query` for every catalog entry, `concurrency` at a time, and names the results.
    async fn evaluate_each<'a, F, Fut>(&'a self, query: F) -> Result<Evaluated, SourceError>
    where
        F: Fn(usize, &'a Entry) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<Series>, Stats), SourceError>>,
    {
        let query = &query;
        let mut runs = futures::stream::iter(
            self.catalog
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| async move { (i, query(i, e).await) }),
        )
        .buffer_unordered(self.concurrency);
        let mut results: Vec<Option<Vec<Series>>> = vec![None; self.catalog.entries.len()];
        let mut stats = Stats::default();
        while let Some((i, r)) = runs.next().await {
            let (series, s) = r?;
            stats += s;
            results[i] = Some(series);
        }
        drop(runs);
        let results = name_results(&self.catalog, results)?;
        Ok(Evaluated { results, stats })
    }

    fn timed_out(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!(
                " (no whole answer within {}s, QUERY_TIMEOUT)",
                self.timeout.as_secs()
            )
        } else {
            String::new()
        }
    }

    async fn query_instant(
        &self,
        metric: &str,
        expr: &str,
        t: i64,
    ) -> Result<(Vec<Series>, Stats), SourceError> {
        let err = |message: String| SourceError::Http {
            metric: metric.to_string(),
            message,
            retryable: false,
        };
        let form = [
            ("query", expr.to_string()),
            ("time", t.to_string()),
            ("dedup", "true".to_string()),
            ("partial_response", "false".to_string()),
        ];
        let what = format!("query {metric} at {t}");
        let (data, bytes) = self.call(metric, "query", &form, what).await?;
        if data.result_type != "vector" {
            return Err(err(format!(
                "expected a vector, got {} (an instant query's answer)",
                data.result_type
            )));
        }
        let mut stats = Stats {
            bytes_in: bytes,
            calls: 1,
            ..Default::default()
        };
        let mut out = Vec::with_capacity(data.result.len());
        for r in data.result {
            let Some((at, v)) = &r.value else {
                return Err(err("a vector element without a value".into()));
            };
            if (at * 1000.0).round() as i64 != t * 1000 {
                return Err(err(format!("a value at {at}, not at the query time {t}")));
            }
            let v = query_range::parse_value(v)
                .ok_or_else(|| err(format!("cannot parse the sample value {v:?}")))?;
            stats.samples += 1;
            stats.series += 1;
            out.push(Series {
                labels: Labels::from_pairs(r.metric),
                values: vec![Some(v)],
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok((out, stats))
    }

    /// The raw sample times of a range-vector expression (`metric[10m]`) evaluated at `at_ms`,
    /// per series, HA replicas apart (no dedup): what the watermark reads over HTTP.
    pub async fn raw_samples(
        &self,
        expr: &str,
        at_ms: i64,
    ) -> Result<(Vec<(Labels, Vec<i64>)>, Stats), SourceError> {
        let name = "(watermark)";
        let time = format!("{}.{:03}", at_ms.div_euclid(1000), at_ms.rem_euclid(1000));
        let form = [
            ("query", expr.to_string()),
            ("time", time),
            ("dedup", "false".to_string()),
            ("partial_response", "false".to_string()),
        ];
        let what = format!("query {expr} at {}", form[1].1);
        let (data, bytes) = self.call(name, "query", &form, what).await?;
        if data.result_type != "matrix" {
            return Err(SourceError::Http {
                metric: name.into(),
                message: format!(
                    "expected a matrix, got {} (a range vector's answer)",
                    data.result_type
                ),
                retryable: false,
            });
        }
        let mut stats = Stats {
            bytes_in: bytes,
            calls: 1,
            ..Default::default()
        };
        let out: Vec<(Labels, Vec<i64>)> = data
            .result
            .into_iter()
            .map(|r| {
                let times: Vec<i64> = r
                    .values
                    .iter()
                    .map(|(t, _)| (t * 1000.0).round() as i64)
                    .collect();
                stats.series += 1;
                stats.samples += times.len() as u64;
                (Labels::from_pairs(r.metric), times)
            })
            .collect();
        Ok((out, stats))
    }

    /// POSTs `form` to `/api/v1/<endpoint>` (tracked in flight as `what`) and returns the
    /// answer's data and its size; a failed, partial or unreadable answer is the error.
    async fn call(
        &self,
        metric: &str,
        endpoint: &str,
        form: &[(&str, String)],
        what: String,
    ) -> Result<(query_range::Data, u64), SourceError> {
        let err = |message: String, retryable: bool| SourceError::Http {
            metric: metric.to_string(),
            message,
            retryable,
        };
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let call = inflight::start("http", &url, what);
        let resp = self
            .client
            .post(&url)
            .form(form)
            .send()
            .await
            .map_err(|e| {
                err(
                    format!("POST {url}: {}{}", error_chain(&e), self.timed_out(&e)),
                    true,
                )
            })?;
        call.progress();
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            let why = format!("reading the answer of {url}: {e}{}", self.timed_out(&e));
            err(why, true)
        })?;
        match query_range::answer_data(&body) {
            Ok(data) => Ok((data, body.len() as u64)),
            Err(refusal) => {
                let retryable = refusal.retryable(status.as_u16());
                let message = match refusal {
                    Refusal::NotAnAnswer { error, head } => {
                        format!(
                            "HTTP {status} from {url}, not a Prometheus API answer ({error}): {head}"
                        )
                    }
                    Refusal::Failed { error_type, error } => {
                        format!("HTTP {status}, {error_type}: {error}")
                    }
                    Refusal::Partial(warnings) => format!(
                        "the answer carries warnings, it would be partial: {}",
                        warnings.join("; ")
                    ),
                    Refusal::NoData => "the answer has no data".into(),
                };
                Err(err(message, retryable))
            }
        }
    }

    async fn query_range(
        &self,
        metric: &str,
        expr: &str,
        steps: Steps,
    ) -> Result<(Vec<Series>, Stats), SourceError> {
        let err = |message: String, retryable: bool| SourceError::Http {
            metric: metric.to_string(),
            message,
            retryable,
        };
        let secs = |ms: i64| (ms / 1000).to_string();
        let form = [
            ("query", expr.to_string()),
            ("start", secs(steps.start)),
            ("end", secs(steps.end())),
            ("step", secs(steps.step)),
            // Thanos Query: deduplicate HA replicas, and fail rather than answer partially
            ("dedup", "true".to_string()),
            ("partial_response", "false".to_string()),
        ];
        let what = format!("query_range {metric} [{}, {}]", form[1].1, form[2].1);
        let (data, bytes) = self.call(metric, "query_range", &form, what).await?;
        if data.result_type != "matrix" {
            return Err(err(
                format!("expected a matrix, got {}", data.result_type),
                false,
            ));
        }
        let mut stats = Stats {
            bytes_in: bytes,
            calls: 1,
            ..Default::default()
        };
        let mut out = Vec::with_capacity(data.result.len());
        for r in data.result {
            let mut values = vec![None; steps.n];
            for (t, v) in &r.values {
                let ms = (t * 1000.0).round() as i64;
                let k = (ms - steps.start) / steps.step;
                if (ms - steps.start) % steps.step != 0 || k < 0 || k as usize >= steps.n {
                    return Err(err(format!("a point at {t} is not on a step"), false));
                }
                values[k as usize] =
                    Some(query_range::parse_value(v).ok_or_else(|| {
                        err(format!("cannot parse the sample value {v:?}"), false)
                    })?);
                stats.samples += 1;
            }
            stats.series += 1;
            out.push(Series {
                labels: Labels::from_pairs(r.metric),
                values,
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok((out, stats))
    }
}
