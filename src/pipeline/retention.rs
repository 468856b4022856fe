//! Retention: deletes this exporter's files whose window start is older than the cutoff,
//! walking only the `end=` and `day=` partitions that can hold them, and only keys of the
//! exporter's own form (`metric=<m>/<T>_<m>.json.gz`) in the clusters it writes.

use std::collections::BTreeSet;

use tracing::{debug, info};

use crate::finout::layout::{
    billing_month, cluster_folder, last_segment, partition_day, window_of_key,
};
use crate::sink::{Sink, SinkError};
use crate::time::{rfc3339, utc_date};

/// What retention did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Partitions listed (list calls made).
    pub lists: u64,
    /// Objects deleted.
    pub deleted: u64,
}

/// Deletes the files of `clusters` under `prefix` whose window starts before `cutoff` (unix
/// seconds).
pub async fn apply(
    sink: &Sink,
    prefix: &str,
    clusters: &BTreeSet<String>,
    cutoff: i64,
) -> Result<Retained, SinkError> {
    let cutoff_day = utc_date(cutoff);
    let mut r = Retained::default();
    for cluster in clusters {
        let ends = sink.list(&cluster_folder(prefix, cluster)).await?;
        r.lists += 1;
        for end in &ends.prefixes {
            let Some(month) = billing_month(last_segment(end)) else {
                continue;
            };
            if month > cutoff_day {
                continue; // the whole month is newer than the cutoff
            }
            let days = sink.list(end).await?;
            r.lists += 1;
            for day in &days.prefixes {
                let Some(d) = partition_day(month, last_segment(day)) else {
                    continue;
                };
                if d > cutoff_day {
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
        cutoff = %rfc3339(cutoff),
        lists = r.lists,
        deleted = r.deleted,
        "retention applied"
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finout::object_key;
    use crate::sink::LocalDir;

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
