//! Finout's layout and file format: one gzip-compressed `query_range` JSON body per
//! (cluster, metric, window), under
//! `<prefix>/<cluster>/end=<YYYYMMDD>/day=<D>/metric=<metric>/<T>_<metric>.json.gz`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::engine::{Series, Steps};
use crate::shard::Shard;

/// The file of one (cluster, metric, window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Object key (or path below the output directory).
    pub key: String,
    /// The cluster folder the key is in.
    pub cluster: String,
    /// The gzip-compressed body.
    pub body: Vec<u8>,
    /// Series in the file.
    pub series: usize,
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The folder of one cluster, `<prefix>/<cluster>/`: its files, and the state of the exporter
/// whose CLUSTER_NAME it is. Slashes around the prefix are not doubled; an empty prefix puts
/// the folder at the top.
pub fn cluster_folder(prefix: &str, cluster: &str) -> String {
    match prefix.trim_matches('/') {
        "" => format!("{cluster}/"),
        p => format!("{p}/{cluster}/"),
    }
}

/// The key of a window's file. `t` is the window start, unix seconds (UTC).
pub fn object_key(prefix: &str, cluster: &str, metric: &str, t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    // the billing period ends on the first day of the next month, as in AWS CUR
    let (ey, em) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    format!(
        "{}end={ey:04}{em:02}01/day={d}/metric={metric}/{t}_{metric}.json.gz",
        cluster_folder(prefix, cluster)
    )
}

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
    let mut out = String::with_capacity(64 + series.len() * (200 + steps.n * 24));
    out.push_str(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, s) in series.enumerate() {
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
    }
    out.push_str("]}}");
    out
}

/// Gzip with a fixed header (no name, mtime 0), so equal bodies give equal bytes.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    enc.write_all(body).expect("writing to memory cannot fail");
    enc.finish().expect("writing to memory cannot fail")
}

/// Everything one window produced, per catalog metric.
pub type WindowResult = Vec<(String, Vec<Series>)>;

/// Splits a window's results by cluster and renders every file. Every cluster seen in the
/// window gets a file for every metric (an empty result where it has no series), so a
/// missing file always means a window not exported, never "no data". With a shard, only the
/// clusters it owns are written.
pub fn window_files<'a>(
    prefix: &str,
    cluster_label: &str,
    default_cluster: &'a str,
    window_start: i64,
    results: &'a WindowResult,
    steps: &[Steps],
    shard: Option<Shard>,
) -> Vec<OutputFile> {
    let owned = |c: &str| shard.is_none_or(|s| s.owns(c));
    debug_assert_eq!(results.len(), steps.len());
    let cluster_of = |s: &'a Series| -> &'a str {
        match s.labels.get(cluster_label) {
            "" => default_cluster,
            c => c,
        }
    };
    let mut clusters: BTreeSet<&str> = results
        .iter()
        .flat_map(|(_, series)| series.iter().map(cluster_of))
        .collect();
    if clusters.is_empty() {
        clusters.insert(default_cluster);
    }
    clusters.retain(|c| owned(c));
    let mut files = Vec::new();
    for ((metric, series), steps) in results.iter().zip(steps) {
        let mut by_cluster: BTreeMap<&str, Vec<&Series>> =
            clusters.iter().map(|&c| (c, Vec::new())).collect();
        for s in series {
            if let Some(v) = by_cluster.get_mut(cluster_of(s)) {
                v.push(s);
            } else {
                debug_assert!(!owned(cluster_of(s)), "every owned cluster is in the set");
            }
        }
        for (cluster, series) in by_cluster {
            let body = render(series.iter().copied(), steps);
            files.push(OutputFile {
                key: object_key(prefix, cluster, metric, window_start),
                cluster: cluster.to_string(),
                body: gzip(body.as_bytes()),
                series: series.len(),
            });
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    #[test]
    fn keys_across_day_and_month_boundaries() {
        // 2025-10-05T00:00Z
        assert_eq!(
            object_key("k8s/prometheus", "c1", "cpu_requests", 1_759_622_400),
            "k8s/prometheus/c1/end=20251101/day=5/metric=cpu_requests/1759622400_cpu_requests.json.gz"
        );
        // 2025-10-31T23:00Z and the next hour, 2025-11-01T00:00Z
        assert_eq!(
            object_key("p", "a", "m", 1_761_951_600),
            "p/a/end=20251101/day=31/metric=m/1761951600_m.json.gz"
        );
        assert_eq!(
            object_key("p/", "a", "m", 1_761_955_200),
            "p/a/end=20251201/day=1/metric=m/1761955200_m.json.gz"
        );
        // December rolls into January of the next year; leap day
        assert_eq!(
            object_key("p", "a", "m", 1_767_222_000),
            "p/a/end=20260101/day=31/metric=m/1767222000_m.json.gz"
        );
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn cluster_folders() {
        assert_eq!(cluster_folder("k8s/prometheus/", "a"), "k8s/prometheus/a/");
        assert_eq!(cluster_folder("/p", "a"), "p/a/");
        assert_eq!(cluster_folder("", "a"), "a/");
    }

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
    fn gzip_is_deterministic() {
        assert_eq!(gzip(b"hello"), gzip(b"hello"));
        let z = gzip(b"hello");
        let mut d = flate2::read::GzDecoder::new(&z[..]);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut d, &mut s).unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn files_per_cluster_with_empty_results() {
        let steps = Steps {
            start: 0,
            step: 60_000,
            n: 1,
        };
        let a = Series {
            labels: Labels::from_pairs([("cluster", "a")]),
            values: vec![Some(1.0)],
        };
        let nolabel = Series {
            labels: Labels::from_pairs([("node", "n")]),
            values: vec![Some(1.0)],
        };
        let results = vec![
            ("m1".to_string(), vec![a, nolabel]),
            ("m2".to_string(), vec![]),
        ];
        let files = window_files("p", "cluster", "home", 0, &results, &[steps, steps], None);
        assert!(
            files
                .iter()
                .all(|f| f.key.starts_with(&format!("p/{}/", f.cluster)))
        );
        let keys: Vec<_> = files.iter().map(|f| (f.key.as_str(), f.series)).collect();
        assert_eq!(
            keys,
            vec![
                ("p/a/end=19700201/day=1/metric=m1/0_m1.json.gz", 1),
                ("p/home/end=19700201/day=1/metric=m1/0_m1.json.gz", 1),
                ("p/a/end=19700201/day=1/metric=m2/0_m2.json.gz", 0),
                ("p/home/end=19700201/day=1/metric=m2/0_m2.json.gz", 0),
            ]
        );
    }

    #[test]
    fn shards_write_disjoint_files_that_add_up() {
        let steps = Steps {
            start: 0,
            step: 60_000,
            n: 1,
        };
        let series = |c: &str| Series {
            labels: Labels::from_pairs([("cluster", c)]),
            values: vec![Some(1.0)],
        };
        let results = vec![(
            "m".to_string(),
            vec![series("a"), series("b"), series("c"), series("")],
        )];
        let all = window_files("p", "cluster", "home", 0, &results, &[steps], None);
        let mut union = Vec::new();
        for index in 0..3 {
            let shard = Shard { index, count: 3 };
            union.extend(window_files(
                "p",
                "cluster",
                "home",
                0,
                &results,
                &[steps],
                Some(shard),
            ));
        }
        union.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(union, all);
        // no series at all: only the shard owning the default cluster writes its empty files
        let empty = vec![("m".to_string(), vec![])];
        let writers = (0..3)
            .filter(|&index| {
                !window_files(
                    "p",
                    "cluster",
                    "home",
                    0,
                    &empty,
                    &[steps],
                    Some(Shard { index, count: 3 }),
                )
                .is_empty()
            })
            .count();
        assert_eq!(writers, 1);
    }
}
