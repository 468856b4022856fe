//! The body of Prometheus' `query_range` answer, both ways: written byte for byte as Prometheus
//! renders it (Finout's files), and read (the HTTP source, the benchmark's agreement check).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::{Series, Steps};

/// Formats a float like Go's `strconv.FormatFloat(v, 'f', -1, 64)` as Prometheus renders
/// sample values: the shortest decimal that round-trips, never an exponent.
pub fn format_value(v: f64, out: &mut String) {
    use std::fmt::Write as _;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Rust's Display prints the shortest round-tripping digits without an exponent.
        let _ = write!(out, "{v}");
    }
}

/// Writes a millisecond timestamp as seconds the way Prometheus' API does (3 fraction digits
/// when there is a fraction).
pub fn format_timestamp(t: i64, out: &mut String) {
    use std::fmt::Write as _;
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    let _ = write!(out, "{}", a / 1000);
    if !a.is_multiple_of(1000) {
        let _ = write!(out, ".{:03}", a % 1000);
    }
}

/// A JSON string escaped like Go's encoding/json (which Prometheus' API uses): HTML-sensitive
/// characters and U+2028/U+2029 as \u escapes.
pub fn json_string(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The body Prometheus' `query_range` returns for `series` (already sorted by labels).
pub fn render<'a>(series: impl ExactSizeIterator<Item = &'a Series>, steps: &Steps) -> String {
    let mut out = Vec::with_capacity(64 + series.len() * (200 + steps.n * 24));
    render_to(series, steps, &mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the body is built from strings")
}

/// Writes the body Prometheus' `query_range` returns for `series` (already sorted by labels)
/// to `w`, one series at a time, so a compressor behind `w` never sees the whole body.
pub fn render_to<'a, W: std::io::Write>(
    series: impl Iterator<Item = &'a Series>,
    steps: &Steps,
    w: &mut W,
) -> std::io::Result<()> {
    w.write_all(br#"{"status":"success","data":{"resultType":"matrix","result":["#)?;
    let mut out = String::new();
    for (i, s) in series.enumerate() {
        out.clear();
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":{"#);
        for (j, (k, v)) in s.labels.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_string(k, &mut out);
            out.push(':');
            json_string(v, &mut out);
        }
        out.push_str(r#"},"values":["#);
        let mut first = true;
        for (k, v) in s.values.iter().enumerate() {
            let Some(v) = v else { continue };
            if !first {
                out.push(',');
            }
            first = false;
            out.push('[');
            format_timestamp(steps.start + steps.step * k as i64, &mut out);
            out.push_str(",\"");
            format_value(*v, &mut out);
            out.push_str("\"]");
        }
        out.push_str("]}");
        w.write_all(out.as_bytes())?;
    }
    w.write_all(b"]}}")
}

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
    use crate::model::Labels;

    #[test]
    fn values_like_go_format_float() {
        let f = |v: f64| {
            let mut s = String::new();
            format_value(v, &mut s);
            s
        };
        assert_eq!(f(0.25), "0.25");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(-0.0), "-0");
        assert_eq!(f(1e21), "1000000000000000000000");
        assert_eq!(f(1e-7), "0.0000001");
        assert_eq!(f(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(123456789.123), "123456789.123");
    }

    #[test]
    fn body_matches_prometheus_rendering() {
        let s = [Series {
            labels: Labels::from_pairs([("pod", "a<b>&\"c\""), ("cluster", "x")]),
            values: vec![Some(0.5), None, Some(2.0)],
        }];
        let steps = Steps {
            start: 1_761_868_800_000,
            step: 60_000,
            n: 3,
        };
        assert_eq!(
            render(s.iter(), &steps),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"cluster":"x","pod":"a\u003cb\u003e\u0026\"c\""},"values":[[1761868800,"0.5"],[1761868920,"2"]]}]}}"#
        );
        let mut t = String::new();
        format_timestamp(1_500, &mut t);
        assert_eq!(t, "1.500");
        assert_eq!(
            render([].iter(), &steps),
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#
        );
    }

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
}
