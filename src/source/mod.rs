//! Where the catalog is evaluated: in-process over raw series (`grpc`: the StoreAPI or remote
//! read), or by Thanos Query over HTTP (`http`). Both send the same [`Part`]s for a window.

pub mod grpc;
pub mod http;
pub mod inventory;
pub mod part;
pub mod watermark;

use std::collections::BTreeSet;

use thiserror::Error;

use crate::catalog::Catalog;
use crate::dedup::SeriesDataError;
use crate::engine::EvalError;
use crate::exit;
use crate::model::{Series, Steps, WindowResult};
use crate::remote_read::RemoteReadError;
use crate::store::StoreError;
use grpc::GrpcSource;
use http::HttpSource;
pub use part::{Part, Parts};
use watermark::{WatermarkQuery, Watermarks};

/// Where the catalog is evaluated.
#[derive(Clone)]
pub enum Source {
    Grpc(Box<GrpcSource>),
    Http(Box<HttpSource>),
}

impl Source {
    /// Evaluates every catalog entry over the windows starting at `starts` (seconds), sending
    /// each result to `parts` as it is ready: for each window and entry, one part with every
    /// series or one part per cluster. An error leaves the windows incomplete.
    pub async fn evaluate_windows(
        &self,
        starts: &[i64],
        parts: Parts,
    ) -> Result<Stats, SourceError> {
        match self {
            Source::Grpc(s) => s.evaluate_windows(starts, parts).await,
            Source::Http(s) => s.evaluate_windows(starts, parts).await,
        }
    }

    /// How the requests were packed, to start the next run from (none over HTTP).
    pub fn packing(&self) -> Option<grpc::Packing> {
        match self {
            Source::Grpc(s) => Some(s.packing()),
            Source::Http(_) => None,
        }
    }

    /// Starts packing requests from `packing` (an earlier run's).
    pub fn seed_packing(&self, packing: &grpc::Packing) {
        if let Source::Grpc(s) = self {
            s.seed_packing(packing);
        }
    }

    /// The same source asking only for `clusters`' series where it can narrow its requests
    /// (the HTTP source evaluates every series; the files are chosen by the layout).
    pub fn only(&self, clusters: &BTreeSet<String>) -> Source {
        match self {
            Source::Grpc(s) => Source::Grpc(Box::new(s.only(clusters))),
            Source::Http(_) => self.clone(),
        }
    }

    /// Every cluster's watermark over `range` (milliseconds): the newest sample of the
    /// watermark metric, and its samples per window.
    pub async fn watermarks(
        &self,
        q: &WatermarkQuery,
        range: (i64, i64),
    ) -> Result<Watermarks, SourceError> {
        match self {
            Source::Grpc(s) => watermark::from_series(s.client(), q, range).await,
            Source::Http(s) => watermark::from_http(s, q, range).await,
        }
    }

    /// The catalog's entry names, in catalog order.
    pub fn entry_names(&self) -> Vec<String> {
        match self {
            Source::Grpc(s) => s.catalog().entry_names(),
            Source::Http(s) => s.catalog().entry_names(),
        }
    }

    /// Evaluates every catalog entry as an instant query at `t` (seconds), as Prometheus'
    /// `/api/v1/query` with `time=t` does.
    pub async fn evaluate_instant(&self, t: i64) -> Result<Evaluated, SourceError> {
        match self {
            Source::Grpc(s) => s.evaluate_instant(t).await,
            Source::Http(s) => s.evaluate_instant(t).await,
        }
    }
}

/// What one window's evaluation cost and produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Input series (gRPC) or result series (HTTP).
    pub series: u64,
    /// Input samples decoded (gRPC) or result points (HTTP).
    pub samples: u64,
    /// Bytes received from the endpoint.
    pub bytes_in: u64,
    /// Calls made (Series streams or query_range requests).
    pub calls: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.series += o.series;
        self.samples += o.samples;
        self.bytes_in += o.bytes_in;
        self.calls += o.calls;
    }
}

/// An instant query's results, one entry per catalog metric in catalog order.
#[derive(Debug)]
pub struct Evaluated {
    pub results: WindowResult,
    pub stats: Stats,
}

/// Why a window could not be evaluated.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    RemoteRead(RemoteReadError),
    #[error("series {series}: {source}")]
    Data {
        series: String,
        source: SeriesDataError,
    },
    #[error("{0}")]
    Eval(#[from] EvalError),
    #[error(
        "the StoreAPI sent series out of order ({0}): the endpoint must support without_replica_labels (a Thanos Querier, sidecar, store or receiver of v0.31.0 or later)"
    )]
    Order(String),
    #[error("HTTP query for {metric} failed: {message}")]
    Http {
        metric: String,
        message: String,
        retryable: bool,
    },
    #[error(
        "cannot set a multi-window request's answer aside in {dir}: {source} (set SPILL_DIR to a writable directory with room for CONCURRENCY x 64 MiB, or WINDOWS_PER_REQUEST=1 to ask one window per request)"
    )]
    Spill { dir: String, source: std::io::Error },
    #[error(
        "no queryable store serves {missing}: Thanos Query drops a store that fails its health check and answers without it (see the Querier's /api/v1/stores, and that store's health); the window is exported once a store serves it again, or without it once it has been absent for longer than the grace ({grace})"
    )]
    Incomplete { missing: String, grace: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the writer stopped taking results")]
    WriterGone,
}

impl From<StoreError> for SourceError {
    fn from(e: StoreError) -> Self {
        SourceError::Store(e)
    }
}

impl From<RemoteReadError> for SourceError {
    /// A chunk encoding refused by the remote read client is the same refusal as the one the
    /// StoreAPI path makes while decoding: the window's data, not the configuration.
    fn from(e: RemoteReadError) -> Self {
        match e {
            RemoteReadError::Encoding { series, encoding } => SourceError::Data {
                series,
                source: SeriesDataError::Encoding(encoding),
            },
            e => SourceError::RemoteRead(e),
        }
    }
}

impl SourceError {
    /// Whether evaluating the window again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Store(e) => e.is_retryable(),
            SourceError::RemoteRead(e) => e.is_retryable(),
            SourceError::Http { retryable, .. } => *retryable,
            // the store may be back on the next attempt, or the next run
            SourceError::Incomplete { .. } => true,
            _ => false,
        }
    }

    /// The process exit code once retries are spent: an outage, a configuration to fix, data
    /// the engine refuses, or a bug.
    pub fn exit_code(&self) -> u8 {
        match self {
            SourceError::Internal(_) | SourceError::WriterGone => exit::INTERNAL,
            SourceError::Incomplete { .. } => exit::UNAVAILABLE,
            e if e.is_retryable() => exit::UNAVAILABLE,
            SourceError::Store(_)
            | SourceError::RemoteRead(_)
            | SourceError::Http { .. }
            | SourceError::Spill { .. } => exit::CONFIG,
            SourceError::Data { .. } | SourceError::Eval(_) | SourceError::Order(_) => {
                exit::DATA_REFUSED
            }
        }
    }
}

/// The evaluation steps of one entry in the window starting at `start` (seconds).
pub fn window_steps(start: i64, time_frame: i64, step: i64) -> Steps {
    debug_assert!(step > 0 && time_frame % step == 0);
    Steps {
        start: start * 1000,
        step: step * 1000,
        n: (time_frame / step) as usize,
    }
}

/// The one evaluation of an instant query at `t` (seconds): a window of a single step (the
/// step's length is never used).
pub fn instant_steps(t: i64) -> Steps {
    Steps {
        start: t * 1000,
        step: 1000,
        n: 1,
    }
}

/// The steps of every catalog entry (its own step, or the global one) in the window starting
/// at `start` (seconds).
pub fn catalog_steps(catalog: &Catalog, start: i64, time_frame: i64, step: i64) -> Vec<Steps> {
    catalog
        .entries
        .iter()
        .map(|e| window_steps(start, time_frame, e.step.map_or(step, |s| s as i64)))
        .collect()
}

/// Pairs each catalog entry's name with its evaluated series; an entry left unevaluated is a
/// bug in the source, never an empty result.
pub fn name_results(
    catalog: &Catalog,
    results: Vec<Option<Vec<Series>>>,
) -> Result<WindowResult, SourceError> {
    debug_assert_eq!(catalog.entries.len(), results.len());
    catalog
        .entries
        .iter()
        .zip(results)
        .map(|(e, r)| {
            r.map(|r| (e.name.clone(), r))
                .ok_or_else(|| SourceError::Internal(format!("entry {} was not evaluated", e.name)))
        })
        .collect()
}

/// A series' labels as a StoreAPI sent them, without the names in `skip` (replica labels).
pub fn series_labels(
    labels: &[crate::store::proto::Label],
    skip: &[String],
) -> Result<crate::model::Labels, SourceError> {
    // What stores send (names sorted and unique, no empty value) is written end to end as
    // the label set holds it, and its text checked as UTF-8 once, not label by label (a
    // day's answer is millions of labels); the label set checks each pair's ends fall on
    // characters. Anything else is read pair by pair.
    let len = labels.iter().map(|l| l.name.len() + l.value.len()).sum();
    let mut text = Vec::with_capacity(len);
    let mut ends = Vec::with_capacity(labels.len());
    let mut usual = true;
    let mut name_before: &[u8] = &[];
    for l in labels {
        if skip.iter().any(|s| s.as_bytes() == l.name) {
            // dropped, but refused all the same when it is not UTF-8
            usual &= std::str::from_utf8(&l.value).is_ok();
            continue;
        }
        usual &= (ends.is_empty() || name_before < &l.name[..]) && !l.value.is_empty();
        name_before = &l.name;
        text.extend_from_slice(&l.name);
        let name_end = text.len() as u32;
        text.extend_from_slice(&l.value);
        ends.push((name_end, text.len() as u32));
    }
    if usual
        && let Ok(text) = String::from_utf8(text)
        && let Some(labels) = crate::model::Labels::from_text(text, ends)
    {
        return Ok(labels);
    }
    pair_by_pair(labels, skip)
}

/// `series_labels` for any labels: out of order, given twice, empty, not UTF-8.
fn pair_by_pair(
    labels: &[crate::store::proto::Label],
    skip: &[String],
) -> Result<crate::model::Labels, SourceError> {
    let mut pairs = Vec::with_capacity(labels.len());
    for l in labels {
        let Some((name, value)) = l.text() else {
            let lossy = labels.iter().map(crate::store::proto::Label::lossy);
            return Err(SourceError::Data {
                series: crate::model::Labels::from_pairs(lossy).to_string(),
                source: SeriesDataError::NotUtf8,
            });
        };
        if !skip.iter().any(|s| s == name) {
            pairs.push((name, value));
        }
    }
    Ok(crate::model::Labels::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{label, proto::Label};

    proptest::proptest! {
        #[test]
        fn series_labels_read_at_once_are_those_read_pair_by_pair(
            sent in proptest::collection::vec(
                (proptest::collection::vec(proptest::sample::select(vec![b'a', b'b', b'r', 0xc3, 0xa9, 0xff]), 0..3),
                 proptest::collection::vec(proptest::sample::select(vec![b'a', b'1', 0xc3, 0xa9]), 0..3)),
                0..6,
            ),
            skip in proptest::sample::subsequence(vec!["r".to_string(), "ab".to_string()], 0..=2),
        ) {
            let mut sent: Vec<Label> = sent
                .into_iter()
                .map(|(n, v)| Label { name: n.into(), value: v.into() })
                .collect();
            for sorted in [false, true] {
                if sorted {
                    // most of what stores send: sorted by name
                    sent.sort_by(|a, b| a.name.cmp(&b.name));
                    sent.dedup_by(|a, b| a.name == b.name);
                }
                let (got, want) = (series_labels(&sent, &skip), pair_by_pair(&sent, &skip));
                proptest::prop_assert_eq!(
                    got.as_ref().map_err(ToString::to_string),
                    want.as_ref().map_err(ToString::to_string)
                );
            }
        }
    }

    #[test]
    fn a_character_across_a_name_and_its_value_is_not_utf8() {
        // "é" is c3 a9: the text end to end is UTF-8, the name and the value are not
        let sent = [Label {
            name: vec![b'a', 0xc3].into(),
            value: vec![0xa9].into(),
        }];
        let err = series_labels(&sent, &[]).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        // a replica label is dropped, and refused all the same when it is not UTF-8
        let sent = [
            label("__name__", "up"),
            Label {
                name: "replica".into(),
                value: vec![0xff].into(),
            },
        ];
        assert!(series_labels(&sent, &["replica".to_string()]).is_err());
    }

    #[test]
    fn series_labels_drop_replica_labels_and_refuse_what_is_not_utf8() {
        let sent = [
            label("__name__", "up"),
            label("cluster", "a"),
            label("replica", "r0"),
        ];
        let got = series_labels(&sent, &["replica".to_string()]).unwrap();
        assert_eq!(got.to_string(), r#"up{cluster="a"}"#);
        let bad = [
            label("__name__", "up"),
            Label {
                name: "pod".into(),
                value: vec![b'p', 0xff].into(),
            },
        ];
        let err = series_labels(&bad, &[]).unwrap_err();
        assert!(matches!(
            err,
            SourceError::Data {
                source: SeriesDataError::NotUtf8,
                ..
            }
        ));
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert_eq!(err.exit_code(), exit::DATA_REFUSED);
    }
}
