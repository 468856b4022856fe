//! The body of Prometheus' `query_range` answer, both ways: written byte for byte as Prometheus
//! renders it (Finout's files), and read (the HTTP source, the benchmark's agreement check).

use std::collections::BTreeMap;

use serde::Deserialize;

pub mod gzip;
mod huffman;
mod render;

#[cfg(test)]
pub(crate) use render::WRITE_AT;
#[cfg(test)]
pub(crate) use render::render;
pub use render::{Body, format_timestamp, format_value, render_to};

/// A `query_range` answer as the API sends it.
#[derive(Debug, Deserialize)]
pub struct Response {
    pub status: String,
    #[serde(default)]
    pub data: Option<Data>,
    #[serde(rename = "errorType", default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The `data` of an answer.
#[derive(Debug, Deserialize)]
pub struct Data {
    #[serde(rename = "resultType")]
    pub result_type: String,
    pub result: Vec<ResultSeries>,
}

/// One series of a matrix (its labels and `[seconds, "value"]` points) or of an instant
/// query's vector (its labels and one `value`).
#[derive(Debug, Deserialize)]
pub struct ResultSeries {
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    pub values: Vec<(f64, String)>,
    #[serde(default)]
    pub value: Option<(f64, String)>,
}

/// Reads an answer body.
pub fn parse(body: &[u8]) -> Result<Response, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Why an answer's data cannot be used.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The body is no Prometheus API answer (a proxy's error page, a cut body): the parser's
    /// error and the body's first 200 bytes.
    NotAnAnswer { error: String, head: String },
    /// `status: error`, with its type (`bad_data`, `execution`, `timeout`, …) and message.
    Failed { error_type: String, error: String },
    /// A success with warnings: Thanos Query's partial answer (a store failed).
    Partial(Vec<String>),
    /// A success without data.
    NoData,
}

impl Refusal {
    /// Whether asking again may give a usable answer, by the HTTP status: 400 `bad_data`
    /// (too many points) and 422 `execution` (too many samples) fail the same way every time;
    /// a timeout (503), another 5xx or 429 may pass; a partial answer may be whole next time.
    pub fn retryable(&self, status: u16) -> bool {
        match self {
            Refusal::Partial(_) => true,
            Refusal::NoData => false,
            Refusal::NotAnAnswer { .. } | Refusal::Failed { .. } => {
                (500..600).contains(&status) || status == 429
            }
        }
    }
}

/// The data of an answer body, unless it is unreadable, failed, partial or empty.
pub fn answer_data(body: &[u8]) -> Result<Data, Refusal> {
    let parsed = parse(body).map_err(|e| Refusal::NotAnAnswer {
        error: e.to_string(),
        head: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    })?;
    if parsed.status != "success" {
        return Err(Refusal::Failed {
            error_type: parsed.error_type.unwrap_or_default(),
            error: parsed.error.unwrap_or_default(),
        });
    }
    if !parsed.warnings.is_empty() {
        return Err(Refusal::Partial(parsed.warnings));
    }
    parsed.data.ok_or(Refusal::NoData)
}

/// The series of a successful matrix answer; `None` for anything else.
pub fn parse_matrix(body: &[u8]) -> Option<Vec<ResultSeries>> {
    let r = parse(body).ok()?;
    if r.status != "success" {
        return None;
    }
    let data = r.data?;
    (data.result_type == "matrix").then_some(data.result)
}

/// A sample value as Prometheus writes it (`"NaN"`, `"+Inf"`, `"-Inf"`, or a decimal).
pub fn parse_value(v: &str) -> Option<f64> {
    match v {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_written() {
        for v in [
            0.25,
            -0.0,
            1e21,
            1e-7,
            f64::INFINITY,
            f64::NEG_INFINITY,
            123456789.123,
        ] {
            let mut s = String::new();
            format_value(v, &mut s);
            assert_eq!(parse_value(&s).map(f64::to_bits), Some(v.to_bits()), "{s}");
        }
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_value("x"), None);
    }

    #[test]
    fn answers_are_refused_by_what_they_say_and_retried_by_their_status() {
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a"},"values":[[60,"1"]]}]}}"#;
        let data = answer_data(matrix).unwrap();
        assert_eq!(
            (data.result_type.as_str(), data.result.len()),
            ("matrix", 1)
        );
        // (HTTP status, body, the refusal's kind, retryable)
        let cases: &[(u16, &[u8], &str, bool)] = &[
            // Thanos Query's limits: the same every time
            (422, br#"{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}"#, "failed", false),
            (400, br#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries"}"#, "failed", false),
            // a query timeout and an overloaded Querier may pass next time
            (503, br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#, "failed", true),
            (429, br#"{"status":"error","errorType":"unavailable","error":"too many requests"}"#, "failed", true),
            // a proxy's page, a cut body
            (502, b"<html>Bad Gateway</html>", "not an answer", true),
            (200, br#"{"status":"success","data":{"resultType":"mat"#, "not an answer", false),
            // a store failed: Thanos answers 200 with warnings, a partial answer
            (200, br#"{"status":"success","warnings":["store 10.0.0.1:10901 unavailable"],"data":{"resultType":"matrix","result":[]}}"#, "partial", true),
            (200, br#"{"status":"success"}"#, "no data", false),
        ];
        for &(status, body, kind, retryable) in cases {
            let refusal = answer_data(body).unwrap_err();
            let got = match &refusal {
                Refusal::NotAnAnswer { head, .. } => {
                    assert!(body.starts_with(head.as_bytes()), "{head}");
                    "not an answer"
                }
                Refusal::Failed { error_type, error } => {
                    assert!(!error_type.is_empty() && !error.is_empty(), "{refusal:?}");
                    "failed"
                }
                Refusal::Partial(w) => {
                    assert_eq!(w.len(), 1);
                    "partial"
                }
                Refusal::NoData => "no data",
            };
            assert_eq!(
                got,
                kind,
                "HTTP {status}: {}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(
                refusal.retryable(status),
                retryable,
                "HTTP {status}: {refusal:?}"
            );
        }
    }
}
