//! Finout's S3 telemetry files: one plain CSV per (telemetry, UTC day), under
//! `<TELEMETRY_PREFIX>/<name>/<YYYY-MM-DD>.csv`, built and read back (retention must recognise
//! exactly these keys and nothing else).
//!
//! The format is Finout's (S3 telemetry integration): a `date` column, 0 to 10 metadata
//! columns, then one telemetry column whose header is the telemetry's name, positive values,
//! every field quoted. Finout reads the files as they are, so they are not compressed.

use jiff::civil::Date;

use super::layout::cluster_folder;
use crate::model::{Series, WindowResult};
use crate::query_range::format_value;

/// The content type the files are uploaded with.
pub const CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// One day's file of one telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryFile {
    /// Object key (or path below the output directory).
    pub key: String,
    /// The telemetry's name.
    pub name: String,
    /// The CSV bytes.
    pub body: Vec<u8>,
    /// Data rows (the header not counted).
    pub rows: usize,
}

/// The folder of one telemetry, `<prefix>/<name>/`: Finout is given it as the folder of that
/// telemetry. Slashes around the prefix are not doubled, as for the cluster folders.
pub fn telemetry_folder(prefix: &str, name: &str) -> String {
    cluster_folder(prefix, name)
}

/// The key of one day's file.
pub fn telemetry_key(prefix: &str, name: &str, day: Date) -> String {
    format!("{}{day}.csv", telemetry_folder(prefix, name))
}

/// `<folder><YYYY-MM-DD>.csv` → that day; `None` for any other key under the folder.
pub fn day_of_key(folder: &str, key: &str) -> Option<Date> {
    let stem = key.strip_prefix(folder)?.strip_suffix(".csv")?;
    if stem.len() != 10 {
        return None;
    }
    let day: Date = stem.parse().ok()?;
    // only the form this module writes
    (day.to_string() == stem).then_some(day)
}

/// Appends `field` quoted, with every `"` doubled (RFC 4180).
fn quoted(field: &str, out: &mut String) {
    out.push('"');
    for c in field.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// The CSV of one telemetry for one day: header `"date",<columns>,"<name>"`, then one row per
/// series whose value is finite and greater than zero (Finout takes positive numbers only),
/// sorted by the metadata columns. `series` carry one value each, the instant query's.
pub fn render_csv(name: &str, columns: &[String], day: Date, series: &[Series]) -> (String, usize) {
    debug_assert!(columns.windows(2).all(|w| w[0] < w[1]), "columns sorted");
    let mut rows: Vec<(Vec<&str>, f64)> = series
        .iter()
        .filter_map(|s| {
            debug_assert_eq!(s.values.len(), 1, "one instant value per series");
            let v = s.values.first().copied().flatten()?;
            (v.is_finite() && v > 0.0)
                .then(|| (columns.iter().map(|c| s.labels.get(c)).collect(), v))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    debug_assert!(
        rows.windows(2).all(|w| w[0].0 != w[1].0),
        "an aggregation's groups differ in its by labels"
    );
    let date = day.to_string();
    let mut out = String::with_capacity(64 + rows.len() * (24 + 24 * columns.len()));
    quoted("date", &mut out);
    for c in columns {
        out.push(',');
        quoted(c, &mut out);
    }
    out.push(',');
    quoted(name, &mut out);
    out.push('\n');
    let mut value = String::new();
    for (meta, v) in &rows {
        quoted(&date, &mut out);
        for m in meta {
            out.push(',');
            quoted(m, &mut out);
        }
        value.clear();
        format_value(*v, &mut value);
        out.push(',');
        quoted(&value, &mut out);
        out.push('\n');
    }
    (out, rows.len())
}

/// The files of one day: for each entry (name, columns) with a result, in `results`' order.
pub fn day_files(
    prefix: &str,
    columns: &[(String, Vec<String>)],
    day: Date,
    results: &WindowResult,
) -> Vec<TelemetryFile> {
    results
        .iter()
        .filter_map(|(name, series)| {
            let (_, cols) = columns.iter().find(|(n, _)| n == name)?;
            let (body, rows) = render_csv(name, cols, day, series);
            Some(TelemetryFile {
                key: telemetry_key(prefix, name, day),
                name: name.clone(),
                body: body.into_bytes(),
                rows,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn series(pairs: &[(&str, &str)], v: f64) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            values: vec![Some(v)],
        }
    }

    #[test]
    fn keys_and_days_both_ways() {
        let d = jiff::civil::date(2025, 11, 1);
        assert_eq!(
            telemetry_key("finout/telemetry", "network_bytes", d),
            "finout/telemetry/network_bytes/2025-11-01.csv"
        );
        assert_eq!(telemetry_key("/t/", "n", d), "t/n/2025-11-01.csv");
        assert_eq!(telemetry_key("", "n", d), "n/2025-11-01.csv");
        let folder = telemetry_folder("t", "n");
        assert_eq!(day_of_key(&folder, "t/n/2025-11-01.csv"), Some(d));
        assert_eq!(
            day_of_key(&folder, "t/n/2024-02-29.csv"),
            Some(jiff::civil::date(2024, 2, 29))
        );
        for other in [
            "t/n/2025-02-29.csv",
            "t/n/2025-11-1.csv",
            "t/n/20251101.csv",
            "t/n/2025-11-01.csv.gz",
            "t/n/notes.csv",
            "t/n/sub/2025-11-01.csv",
            "t/m/2025-11-01.csv",
            "t/n/2025-11-01",
        ] {
            assert_eq!(day_of_key(&folder, other), None, "{other}");
        }
    }

    #[test]
    fn csv_quotes_every_field_sorts_rows_and_keeps_positive_values() {
        let day = jiff::civil::date(2025, 10, 31);
        let columns = vec!["cluster".to_string(), "namespace".to_string()];
        let s = [
            series(&[("cluster", "b"), ("namespace", "kube-system")], 0.25),
            series(&[("cluster", "a"), ("namespace", "say \"hi\", ok")], 1e21),
            series(&[("cluster", "a"), ("namespace", "default")], 3.0),
            // no namespace label: an empty field
            series(&[("cluster", "a")], 1e-7),
            series(&[("cluster", "a"), ("namespace", "zero")], 0.0),
            series(&[("cluster", "a"), ("namespace", "neg")], -1.0),
            series(&[("cluster", "a"), ("namespace", "nan")], f64::NAN),
            series(&[("cluster", "a"), ("namespace", "inf")], f64::INFINITY),
        ];
        let (csv, rows) = render_csv("network_bytes", &columns, day, &s);
        assert_eq!(rows, 4);
        assert_eq!(
            csv,
            concat!(
                "\"date\",\"cluster\",\"namespace\",\"network_bytes\"\n",
                "\"2025-10-31\",\"a\",\"\",\"0.0000001\"\n",
                "\"2025-10-31\",\"a\",\"default\",\"3\"\n",
                "\"2025-10-31\",\"a\",\"say \"\"hi\"\", ok\",\"1000000000000000000000\"\n",
                "\"2025-10-31\",\"b\",\"kube-system\",\"0.25\"\n",
            )
        );
        // no metadata columns, no rows: the header alone, so a missing file always means a
        // day not exported
        let (csv, rows) = render_csv("pods", &[], day, &[]);
        assert_eq!((csv.as_str(), rows), ("\"date\",\"pods\"\n", 0));
        let (csv, _) = render_csv("pods", &[], day, &[series(&[], 42.5)]);
        assert_eq!(csv, "\"date\",\"pods\"\n\"2025-10-31\",\"42.5\"\n");
    }

    #[test]
    fn a_day_has_one_file_per_entry() {
        let day = jiff::civil::date(2025, 11, 1);
        let results = vec![
            ("a".to_string(), vec![series(&[("ns", "x")], 2.0)]),
            ("b".to_string(), vec![]),
        ];
        let columns = vec![
            ("a".to_string(), vec!["ns".to_string()]),
            ("b".to_string(), vec![]),
        ];
        let files = day_files("t", &columns, day, &results);
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.key.as_str(), f.rows, String::from_utf8_lossy(&f.body)))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "t/a/2025-11-01.csv",
                    1,
                    "\"date\",\"ns\",\"a\"\n\"2025-11-01\",\"x\",\"2\"\n".into()
                ),
                ("t/b/2025-11-01.csv", 0, "\"date\",\"b\"\n".into()),
            ]
        );
    }
}
