//! Retention: deletes this exporter's files whose window start is older than the cutoff,
//! walking only the `end=` and `day=` partitions that can hold them, and only keys of the
//! exporter's own form (`metric=<m>/<T>_<m>.json.gz`) in the clusters it writes.

use std::collections::BTreeSet;

use tracing::{debug, info};

use crate::output::cluster_folder;
use crate::sink::{Sink, SinkError};

/// What retention did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Partitions listed (list calls made).
    pub lists: u64,
    /// Objects deleted.
    pub deleted: u64,
}

/// Days since the epoch of a civil date (inverse of `civil_from_days`, Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `end=YYYYMMDD` → the year, month and first day (days since the epoch) of the billing month
/// it closes.
fn billing_month(name: &str) -> Option<(i64, u32, i64)> {
    let digits = name.strip_prefix("end=")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = digits[..4].parse().ok()?;
    let m: u32 = digits[4..6].parse().ok()?;
    if !(1..=12).contains(&m) || &digits[6..] != "01" {
        return None;
    }
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    Some((py, pm, days_from_civil(py, pm, 1)))
}

/// `<T>_<metric>.json.gz` under `metric=<metric>/` → T.
fn window_of_key(key: &str) -> Option<i64> {
    let mut parts = key.rsplit('/');
    let file = parts.next()?;
    let metric = parts.next()?.strip_prefix("metric=")?;
    let t = file
        .strip_suffix(".json.gz")?
        .strip_suffix(metric)?
        .strip_suffix('_')?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn last_segment(prefix: &str) -> &str {
    let p = prefix.strip_suffix('/').unwrap_or(prefix);
    &p[p.rfind('/').map_or(0, |i| i + 1)..]
}

/// Deletes the files of `clusters` under `prefix` whose window starts before `cutoff` (unix
/// seconds).
pub async fn apply(
    sink: &Sink,
    prefix: &str,
    clusters: &BTreeSet<String>,
    cutoff: i64,
) -> Result<Retained, SinkError> {
    let cutoff_day = cutoff.div_euclid(86_400);
    let mut r = Retained::default();
    for cluster in clusters {
        let ends = sink.list(&cluster_folder(prefix, cluster)).await?;
        r.lists += 1;
        for end in &ends.prefixes {
            let Some((y, month, month_start)) = billing_month(last_segment(end)) else {
                continue;
            };
            if month_start > cutoff_day {
                continue; // the whole month is newer than the cutoff
            }
            let days = sink.list(end).await?;
            r.lists += 1;
            for day in &days.prefixes {
                let Some(d) = last_segment(day)
                    .strip_prefix("day=")
                    .and_then(|d| d.parse::<u32>().ok())
                else {
                    continue;
                };
                if days_from_civil(y, month, d) > cutoff_day {
                    continue;
                }
                let metrics = sink.list(day).await?;
                r.lists += 1;
                for metric in &metrics.prefixes {
                    if !last_segment(metric).starts_with("metric=") {
                        continue;
                    }
                    let files = sink.list(metric).await?;
                    r.lists += 1;
                    let expired: Vec<String> = files
                        .keys
                        .into_iter()
                        .filter(|k| window_of_key(k).is_some_and(|t| t < cutoff))
                        .collect();
                    if !expired.is_empty() {
                        debug!(partition = %metric, files = expired.len(), "deleting expired files");
                        r.deleted += sink.delete(&expired).await?;
                    }
                }
            }
        }
    }
    info!(
        clusters = clusters.len(),
        cutoff = %jiff::Timestamp::from_second(cutoff).map(|t| t.to_string()).unwrap_or_default(),
        lists = r.lists,
        deleted = r.deleted,
        "retention applied"
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{civil_from_days, object_key};
    use crate::sink::LocalDir;

    #[test]
    fn partitions_and_keys() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        for z in [-1000, 0, 19_782, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        // end=20251101 closes October 2025
        assert_eq!(
            billing_month("end=20251101"),
            Some((2025, 10, days_from_civil(2025, 10, 1)))
        );
        assert_eq!(
            billing_month("end=20260101"),
            Some((2025, 12, days_from_civil(2025, 12, 1)))
        );
        assert_eq!(billing_month("end=2025110"), None);
        assert_eq!(billing_month("end=20251102"), None);
        assert_eq!(billing_month("other"), None);
        assert_eq!(
            window_of_key("p/a/end=20251101/day=5/metric=cpu_usage/1759622400_cpu_usage.json.gz"),
            Some(1_759_622_400)
        );
        assert_eq!(
            window_of_key("p/a/end=20251101/day=5/metric=cpu_usage/notes.txt"),
            None
        );
        assert_eq!(
            window_of_key("p/a/end=20251101/day=5/metric=cpu_usage/1_other.json.gz"),
            None
        );
    }

    #[tokio::test]
    async fn deletes_exactly_the_expired_files_of_its_clusters() {
        let root = std::env::temp_dir().join(format!("retention-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let sink = Sink::Local(LocalDir::new(&root));
        // hourly windows from 2025-10-30T00:00Z to 2025-11-02T00:00Z, two clusters of ours and
        // one of another exporter
        let start = 1_761_782_400;
        for w in (0..72).map(|h| start + h * 3600) {
            for c in ["a", "b", "other"] {
                sink.put(&object_key("p", c, "m", w), vec![1], "")
                    .await
                    .unwrap();
            }
        }
        sink.put("p/a/storeapi-exporter-state.json", vec![1], "")
            .await
            .unwrap();
        sink.put("p/a/end=20251101/day=30/metric=m/readme.txt", vec![1], "")
            .await
            .unwrap();
        sink.put(&object_key("q", "a", "m", start), vec![1], "")
            .await
            .unwrap();
        let ours: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let cutoff = start + 30 * 3600 + 1800; // 2025-10-31T06:30Z
        let r = apply(&sink, "p", &ours, cutoff).await.unwrap();
        assert_eq!(
            r.deleted,
            2 * 31,
            "windows 00:00 .. 06:00 of Oct 31 and all of Oct 30"
        );
        for w in (0..72).map(|h| start + h * 3600) {
            for c in ["a", "b"] {
                let exists = root.join(object_key("p", c, "m", w)).exists();
                assert_eq!(exists, w >= cutoff, "cluster {c} window {w}");
            }
            assert!(root.join(object_key("p", "other", "m", w)).exists());
        }
        assert!(root.join("p/a/storeapi-exporter-state.json").exists());
        assert!(
            root.join("p/a/end=20251101/day=30/metric=m/readme.txt")
                .exists()
        );
        assert!(root.join(object_key("q", "a", "m", start)).exists());
        // November is newer than the cutoff: never listed
        let again = apply(&sink, "p", &ours, cutoff).await.unwrap();
        assert_eq!(again.deleted, 0);
        // a: cluster, end=, days 30 (kept for readme.txt) and 31, a metric in each; b: day 30
        // is gone
        assert_eq!(again.lists, (1 + 1 + 2 + 2) + (1 + 1 + 1 + 1));
        let _ = std::fs::remove_dir_all(&root);
    }
}
