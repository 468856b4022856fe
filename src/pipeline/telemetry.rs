//! The telemetry day loop: each complete UTC day, every telemetry entry is evaluated as an
//! instant query at the day's end (the next 00:00Z), its CSV written, then the state advanced;
//! a day that cannot be evaluated writes nothing. Planning the days is a pure function of the
//! clock, the saved progress and the settings; retention deletes only day files of the
//! catalog's telemetry names.

use std::collections::BTreeMap;

use thiserror::Error;
use tracing::{debug, info, warn};

use super::retention::Retained;
use super::retry::{put_all, with_retries};
use super::{Checkpoint, Stop};
use crate::exit;
use crate::finout::telemetry::{CONTENT_TYPE, day_files, day_of_key, telemetry_folder};
use crate::sink::{Sink, SinkError};
use crate::source::{Evaluated, Source, SourceError, Stats};
use crate::time::{day_start, rfc3339, utc_date, window_starts};

/// A UTC day, seconds (unix time has no leap seconds: days start at multiples of it).
pub const DAY: i64 = 86_400;

/// Totals of the telemetry export.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DaySummary {
    pub days: u64,
    pub files: u64,
    pub rows: u64,
    pub bytes_out: u64,
    pub stats: Stats,
}

/// Why the telemetry export stopped.
#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("telemetry of {} failed after {attempts} attempt(s): {source}", utc_date(*day))]
    Day {
        day: i64,
        attempts: u32,
        source: SourceError,
    },
    #[error("telemetry of {}: {source}", utc_date(*day))]
    Sink { day: i64, source: SinkError },
    #[error("saving the state after the telemetry of {}: {source}", utc_date(*day))]
    State { day: i64, source: SinkError },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("interrupted before the telemetry of {}: stopped starting new days", utc_date(*.0))]
    Interrupted(i64),
}

impl TelemetryError {
    /// The process exit code for this failure (as for a window's).
    pub fn exit_code(&self) -> u8 {
        match self {
            TelemetryError::Day { source, .. } => source.exit_code(),
            TelemetryError::Sink { source, .. } | TelemetryError::State { source, .. } => {
                source.exit_code()
            }
            TelemetryError::Interrupted(_) => exit::INTERRUPTED,
            TelemetryError::Internal(_) => exit::INTERNAL,
        }
    }
}

/// What the telemetry part of one run does.
#[derive(Debug, PartialEq, Eq)]
pub struct DayPlan {
    /// Day starts (unix seconds, 00:00Z) to evaluate, in time order.
    pub days: Vec<i64>,
    /// Per telemetry name, the first day it is written (the days before are written already).
    pub first: BTreeMap<String, i64>,
}

/// The complete days to write: for each name, from its saved progress (none saved: from the
/// day `backfill` ago; never before the first day retention keeps whole) to the last day that
/// ended `settle` seconds before `now`.
pub fn plan_days(
    now: i64,
    progress: &BTreeMap<String, i64>,
    names: &[String],
    backfill: i64,
    settle: i64,
    retention: Option<i64>,
) -> DayPlan {
    let backfill_start = (now - backfill).div_euclid(DAY) * DAY;
    let retention_start = retention.map(|r| (now - r + DAY - 1).div_euclid(DAY) * DAY);
    let first: BTreeMap<String, i64> = names
        .iter()
        .map(|n| {
            // a progress off a day boundary (edited by hand) rewrites its day
            let saved = progress.get(n).map(|u| u.div_euclid(DAY) * DAY);
            let start = saved.unwrap_or(backfill_start);
            (n.clone(), retention_start.map_or(start, |r| start.max(r)))
        })
        .collect();
    let days = match first.values().min() {
        Some(&from) => window_starts(from, now - settle - DAY + 1, DAY),
        None => Vec::new(),
    };
    DayPlan { days, first }
}

/// Exports the telemetry entries' daily files.
pub struct DayExporter {
    /// Evaluates the telemetry entries (its catalog's entries, in `columns`' order).
    pub source: Source,
    pub sink: Sink,
    /// TELEMETRY_PREFIX.
    pub prefix: String,
    /// Each entry's name and metadata columns (its outer `by` labels, sorted).
    pub columns: Vec<(String, Vec<String>)>,
    /// Attempts per day (evaluation) and per file (upload) on transient errors.
    pub attempts: u32,
    pub write_concurrency: usize,
}

impl DayExporter {
    /// The telemetry names, in entry order.
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Writes the files of `days` (day starts, time order) for the names due on each day
    /// (`first`; a name not in it is due every day), advancing the state after each day. Stops
    /// at the first day that fails, or before the next day once `stop` is set (a day in flight
    /// is bounded by the command's shutdown timeout, as the phases around the windows are).
    pub async fn export(
        &self,
        days: &[i64],
        first: &BTreeMap<String, i64>,
        stop: &Stop,
        mut checkpoint: Option<Checkpoint<'_, '_>>,
    ) -> Result<DaySummary, (DaySummary, TelemetryError)> {
        let mut summary = DaySummary::default();
        for &day in days {
            if stop.is_requested() {
                return Err((summary, TelemetryError::Interrupted(day)));
            }
            let due: Vec<(String, Vec<String>)> = self
                .columns
                .iter()
                .filter(|(n, _)| first.get(n).is_none_or(|&f| f <= day))
                .cloned()
                .collect();
            if due.is_empty() {
                continue;
            }
            let Evaluated { results, stats, .. } = self
                .evaluate_with_retries(day, stop)
                .await
                .map_err(|e| (summary, e))?;
            let (prefix, date) = (self.prefix.clone(), utc_date(day));
            let files =
                tokio::task::spawn_blocking(move || day_files(&prefix, &due, date, &results))
                    .await
                    .map_err(|e| {
                        (
                            summary,
                            TelemetryError::Internal(format!(
                                "rendering the telemetry of {date}: {e}"
                            )),
                        )
                    })?;
            let written: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
            let (n, rows) = (
                files.len() as u64,
                files.iter().map(|f| f.rows as u64).sum::<u64>(),
            );
            let bytes: u64 = files.iter().map(|f| f.body.len() as u64).sum();
            put_all(
                &self.sink,
                files.into_iter().map(|f| (f.key, f.body)).collect(),
                CONTENT_TYPE,
                self.attempts,
                self.write_concurrency,
                &date.to_string(),
            )
            .await
            .map_err(|source| (summary, TelemetryError::Sink { day, source }))?;
            if let Some(cp) = checkpoint.as_mut() {
                for name in written {
                    let until = cp.state.telemetry.entry(name).or_insert(day + DAY);
                    debug_assert!(*until <= day + DAY, "progress never moves backwards");
                    *until = day + DAY;
                }
                cp.store
                    .save(cp.state)
                    .await
                    .map_err(|source| (summary, TelemetryError::State { day, source }))?;
            }
            summary.days += 1;
            summary.files += n;
            summary.rows += rows;
            summary.bytes_out += bytes;
            summary.stats += stats;
            info!(day = %date, files = n, rows, "telemetry day written");
        }
        Ok(summary)
    }

    async fn evaluate_with_retries(
        &self,
        day: i64,
        stop: &Stop,
    ) -> Result<Evaluated, TelemetryError> {
        with_retries(
            self.attempts,
            |e: &SourceError| e.is_retryable() && !stop.is_requested(),
            |attempt, e, pause| {
                warn!(day = %utc_date(day), attempt, error = %e, retry_in_ms = pause.as_millis() as u64, "telemetry day failed, retrying");
            },
            async || self.source.evaluate_instant(day + DAY).await,
        )
        .await
        .map_err(|(source, attempts)| TelemetryError::Day {
            day,
            attempts,
            source,
        })
    }
}

/// Deletes the day files `<prefix>/<name>/<YYYY-MM-DD>.csv` of `names` whose day starts before
/// `cutoff` (unix seconds); any other key is left alone.
pub async fn apply_retention(
    sink: &Sink,
    prefix: &str,
    names: &[String],
    cutoff: i64,
) -> Result<Retained, SinkError> {
    let mut r = Retained::default();
    for name in names {
        let folder = telemetry_folder(prefix, name);
        let listed = sink.list(&folder).await?;
        r.lists += 1;
        let expired: Vec<String> = listed
            .keys
            .into_iter()
            .filter(|k| day_of_key(&folder, k).is_some_and(|d| day_start(d) < cutoff))
            .collect();
        if !expired.is_empty() {
            debug!(folder = %folder, files = expired.len(), "deleting expired telemetry files");
            r.deleted += sink.delete(&expired).await?;
        }
    }
    info!(
        telemetry = names.len(),
        cutoff = %rfc3339(cutoff),
        lists = r.lists,
        deleted = r.deleted,
        "telemetry retention applied"
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finout::telemetry::telemetry_key;
    use crate::sink::LocalDir;

    // 2025-10-31T00:00Z, 2025-11-01T00:00Z, 2025-11-02T00:00Z
    const OCT31: i64 = 1_761_868_800;
    const NOV1: i64 = OCT31 + DAY;
    const NOV2: i64 = NOV1 + DAY;
    const SETTLE: i64 = 600;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn first_run_backfills_the_complete_days_across_the_month_end() {
        let none = BTreeMap::new();
        // 10 minutes after Nov 2 began: Oct 31 and Nov 1 are complete and settled
        let p = plan_days(NOV2 + SETTLE, &none, &names(&["a"]), 2 * DAY, SETTLE, None);
        assert_eq!(p.days, vec![OCT31, NOV1]);
        assert_eq!(p.first["a"], OCT31);
        // a second earlier, Nov 1 has not settled
        let p = plan_days(
            NOV2 + SETTLE - 1,
            &none,
            &names(&["a"]),
            2 * DAY,
            SETTLE,
            None,
        );
        assert_eq!(p.days, vec![OCT31]);
        // the backfill starts at the day holding now - BACKFILL_DAYS
        let p = plan_days(NOV2 + 5 * 3600, &none, &names(&["a"]), DAY, SETTLE, None);
        assert_eq!(p.days, vec![NOV1]);
        // no telemetry, no days
        assert!(plan_days(NOV2, &none, &[], DAY, 0, None).days.is_empty());
    }

    #[test]
    fn saved_progress_resumes_each_name_where_it_stopped() {
        let saved: BTreeMap<String, i64> =
            [("a".to_string(), NOV1), ("b".to_string(), NOV2)].into();
        let p = plan_days(
            NOV2 + SETTLE,
            &saved,
            &names(&["a", "b", "new"]),
            3 * DAY,
            SETTLE,
            None,
        );
        // a added to the catalog later backfills on its own; b has nothing left to do
        assert_eq!(p.days, vec![OCT31 - DAY, OCT31, NOV1]);
        assert_eq!(p.first["a"], NOV1);
        assert_eq!(p.first["b"], NOV2);
        assert_eq!(p.first["new"], OCT31 - DAY);
        // nothing new within the settle delay
        let done: BTreeMap<String, i64> = [("a".to_string(), NOV2)].into();
        let p = plan_days(NOV2 + DAY, &done, &names(&["a"]), DAY, SETTLE, None);
        assert!(p.days.is_empty());
    }

    #[test]
    fn progress_older_than_the_retention_starts_at_the_first_day_kept_whole() {
        let saved: BTreeMap<String, i64> = [("a".to_string(), OCT31 - 10 * DAY)].into();
        let now = NOV2 + 3600;
        let p = plan_days(now, &saved, &names(&["a"]), DAY, SETTLE, Some(2 * DAY));
        // now - 2 d = Oct 31 01:00: Oct 31 would be deleted right away, Nov 1 is kept
        assert_eq!(p.first["a"], NOV1);
        assert_eq!(p.days, vec![NOV1]);
    }

    #[tokio::test]
    async fn retention_deletes_only_expired_day_files_of_the_names() {
        let root = std::env::temp_dir().join(format!("telemetry-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let sink = Sink::Local(LocalDir::new(&root));
        for d in 0..5 {
            for n in ["a", "b", "other"] {
                let key = telemetry_key("t", n, utc_date(OCT31 - 2 * DAY + d * DAY));
                sink.put(&key, vec![1], "").await.unwrap();
            }
        }
        for k in [
            "t/a/notes.csv",
            "t/a/2025-10-29.csv.bak",
            "u/a/2025-10-29.csv",
        ] {
            sink.put(k, vec![1], "").await.unwrap();
        }
        // the cutoff inside Oct 31: Oct 29 and 30 go, Oct 31 started before it and goes too
        let r = apply_retention(&sink, "t", &names(&["a", "b"]), OCT31 + 3600)
            .await
            .unwrap();
        assert_eq!((r.lists, r.deleted), (2, 6));
        for n in ["a", "b"] {
            for (d, kept) in [(29, false), (30, false), (31, false)] {
                let key = format!("t/{n}/2025-10-{d}.csv");
                assert_eq!(root.join(&key).exists(), kept, "{key}");
            }
            assert!(root.join(format!("t/{n}/2025-11-01.csv")).exists());
            assert!(root.join(format!("t/{n}/2025-11-02.csv")).exists());
        }
        for k in [
            "t/other/2025-10-29.csv",
            "t/a/notes.csv",
            "t/a/2025-10-29.csv.bak",
            "u/a/2025-10-29.csv",
        ] {
            assert!(root.join(k).exists(), "{k} is not ours");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
