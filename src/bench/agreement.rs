//! Whether two exports of the same windows agree: the same keys, and per file the same
//! series, timestamps and values within 1e-9 relative.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Agreement, BenchError, io};
use crate::query_range;

type Points = Vec<(f64, f64)>;

/// Every file below `dir`, as paths relative to it, sorted.
fn files_below(dir: &Path) -> Result<Vec<String>, BenchError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), BenchError> {
        for e in std::fs::read_dir(dir).map_err(io("listing", dir))? {
            let p = e.map_err(io("listing", dir))?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// A result file's series: labels (as canonical JSON) → points; `None` if it is no matrix.
pub fn parse_matrix(body: &[u8]) -> Option<BTreeMap<String, Points>> {
    query_range::parse_matrix(body)?
        .into_iter()
        .map(|s| {
            let points = s
                .values
                .iter()
                .map(|(t, v)| Some((*t, query_range::parse_value(v)?)))
                .collect::<Option<Points>>()?;
            let labels = serde_json::to_string(&s.metric).ok()?;
            Some((labels, points))
        })
        .collect()
}

/// Compares two result bodies (uncompressed JSON); adds to `a`.
pub fn compare_bodies(name: &str, x: &[u8], y: &[u8], a: &mut Agreement) {
    const MAX_LISTED: usize = 10;
    let differ = |a: &mut Agreement, what: String| {
        if a.differences.len() < MAX_LISTED {
            a.differences.push(format!("{name}: {what}"));
        }
    };
    a.files += 1;
    if x == y {
        a.identical_files += 1;
    }
    let (Some(mx), Some(my)) = (parse_matrix(x), parse_matrix(y)) else {
        differ(a, "not a query_range matrix".into());
        return;
    };
    if !mx.keys().eq(my.keys()) {
        differ(a, "different series".into());
        return;
    }
    for (k, px) in &mx {
        let py = &my[k];
        if px.len() != py.len() {
            differ(a, format!("{k}: {} points against {}", px.len(), py.len()));
            continue;
        }
        for (p, q) in px.iter().zip(py) {
            a.points += 1;
            if p.0 != q.0 {
                differ(a, format!("{k}: timestamp {} against {}", p.0, q.0));
                break;
            }
            if p.1 == q.1 || (p.1.is_nan() && q.1.is_nan()) {
                continue;
            }
            let rel = (p.1 - q.1).abs() / q.1.abs().max(f64::MIN_POSITIVE);
            if rel.is_finite() {
                a.max_relative_difference = a.max_relative_difference.max(rel);
            }
            // NaN against a number is a difference too
            if rel.is_nan() || rel > 1e-9 {
                differ(a, format!("{k} at {}: {} against {}", p.0, p.1, q.1));
                break;
            }
        }
    }
}

fn gunzip(path: &Path) -> Result<Vec<u8>, BenchError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
        .map_err(io("decompressing", path))?;
    Ok(out)
}

/// Compares two export directories: the same keys, and per file the same series, timestamps
/// and values within 1e-9 relative.
pub fn compare_dirs(a: &Path, b: &Path) -> Result<Agreement, BenchError> {
    compare_dirs_where(a, b, |_| true)
}

/// The same for the files `keep` takes (paths relative to the directories).
pub fn compare_dirs_where(
    a: &Path,
    b: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Agreement, BenchError> {
    let only = |d| -> Result<Vec<String>, BenchError> {
        Ok(files_below(d)?.into_iter().filter(|f| keep(f)).collect())
    };
    let (fa, fb) = (only(a)?, only(b)?);
    let mut agreement = Agreement::default();
    for f in fa.iter().filter(|f| !fb.contains(f)).take(5) {
        agreement
            .differences
            .push(format!("{f}: only in {}", a.display()));
    }
    for f in fb.iter().filter(|f| !fa.contains(f)).take(5) {
        agreement
            .differences
            .push(format!("{f}: only in {}", b.display()));
    }
    for f in fa.iter().filter(|f| fb.contains(f)) {
        let (x, y) = (gunzip(&a.join(f))?, gunzip(&b.join(f))?);
        compare_bodies(f, &x, &y, &mut agreement);
    }
    Ok(agreement)
}
