//! `run`, the CronJob: export every complete window since the saved state (first run: since
//! BACKFILL_DAYS ago) up to now minus the settle delay that every cluster's data has reached
//! (`late`), advancing the state after each window; write again the windows late data changed;
//! then every complete telemetry day the same way, then apply retention.

use std::time::Instant;

use tracing::{info, warn};

use super::late::LateRun;
use super::push::RunReport;
use super::{AppError, Finished, build_exporter};
use crate::cli::Settings;
use crate::pipeline::progress::Progress;
use crate::pipeline::retention;
use crate::pipeline::state::{State, StateError, StateStore, state_key};
use crate::pipeline::telemetry::{apply_retention, plan_days};
use crate::pipeline::{Checkpoint, ExportError, Stop};
use crate::time::{rfc3339, window_starts};

/// What one run does, decided from the clock, the saved state and the settings alone.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RunPlan {
    /// The state to start from (the saved one, a new one at the backfill start, or moved up
    /// to the retention cutoff).
    pub state: State,
    /// When the state was older than the retention: where it was, and the retention cutoff it
    /// was moved up to (older windows would be deleted right away).
    pub skipped_to_retention: Option<(i64, i64)>,
    /// Window starts to export, in time order.
    pub windows: Vec<i64>,
    /// The windows due but held back until the oldest is BATCH_DELAY old: how many, and when
    /// they will be exported (the clock's unix seconds).
    pub waiting: Option<(usize, i64)>,
    /// Files whose window starts before this are deleted afterwards (unix seconds).
    pub retention_cutoff: Option<i64>,
}

/// Where a first run starts: the window holding now - BACKFILL_DAYS.
fn backfill_start(now: i64, s: &Settings) -> i64 {
    (now - s.backfill.as_secs() as i64).div_euclid(s.time_frame) * s.time_frame
}

pub(super) fn plan_run(now: i64, saved: Option<State>, s: &Settings) -> RunPlan {
    let tf = s.time_frame;
    let backfill_start = backfill_start(now, s);
    let retention = s.retention.map(|r| r.as_secs() as i64);
    // the first window that retention keeps whole
    let retention_start = retention.map(|r| (now - r + tf - 1).div_euclid(tf) * tf);
    let mut state = saved.unwrap_or_else(|| State::new(backfill_start, tf as u64));
    let mut skipped_to_retention = None;
    if let Some(r) = retention_start
        && state.exported_until < r
    {
        skipped_to_retention = Some((state.exported_until, r));
        state.advance(r);
    }
    let limit = now - s.settle_delay.as_secs() as i64;
    let mut windows = window_starts(state.exported_until, limit - tf + 1, tf);
    // due windows wait until the oldest is BATCH_DELAY old, then go together
    let mut waiting = None;
    if let Some(&oldest) = windows.first() {
        let ready_at = oldest + tf + s.batch_delay.as_secs() as i64;
        if now < ready_at {
            waiting = Some((windows.len(), ready_at));
            windows.clear();
        }
    }
    RunPlan {
        state,
        skipped_to_retention,
        windows,
        waiting,
        retention_cutoff: retention.map(|r| now - r),
    }
}

pub(super) async fn run_job(
    s: &Settings,
    bar: bool,
    stop: &Stop,
    report: &mut RunReport,
) -> Result<(), AppError> {
    let began = Instant::now();
    let now = s.now.unwrap_or_else(|| jiff::Timestamp::now().as_second());
    let tf = s.time_frame;
    let mut progress = Progress::start(s.progress_interval, bar);
    let (mut exporter, telemetry) = build_exporter(s).await?;
    let store = StateStore {
        sink: &exporter.sink,
        key: state_key(
            &exporter.prefix,
            &exporter.cluster_name,
            exporter.shard.map(|s| s.pair()),
        ),
        now,
    };
    let saved = store.load(tf as u64).await?;
    report.state_read = true;
    report.last_success = saved.as_ref().map(|s| s.last_success).filter(|&t| t > 0);
    match &saved {
        Some(st) => {
            info!(key = %store.key, exported_until = %rfc3339(st.exported_until), "state loaded")
        }
        None => {
            let start = backfill_start(now, s);
            info!(key = %store.key, start = %rfc3339(start), "no state: first run, backfilling");
        }
    }
    let RunPlan {
        mut state,
        skipped_to_retention,
        windows: mut starts,
        waiting,
        retention_cutoff,
    } = plan_run(now, saved, s);
    if let Some((due, at)) = waiting {
        info!(
            windows_due = due,
            exported_from = %rfc3339(at),
            batch_delay_s = s.batch_delay.as_secs(),
            "windows due are held until the oldest is BATCH_DELAY old, then exported together"
        );
    }
    if let Some((was, r)) = skipped_to_retention {
        warn!(
            exported_until = %rfc3339(was),
            retention_start = %rfc3339(r),
            "the state is older than the retention: starting at the retention cutoff, older windows would be deleted right away"
        );
    }
    exporter.source.seed_packing(&state.packing);
    if let Some(c) = exporter.completeness.as_mut() {
        c.start(&state.sources, now)
            .await
            .map_err(AppError::Preflight)?;
    }
    let late = LateRun::new(s);
    let late_plan = match &late {
        Some(l) => {
            l.plan(&exporter, &mut starts, &mut state, now, stop)
                .await?
        }
        None => None,
    };
    if let Some(plan) = &late_plan {
        report.lagging = plan
            .lagging
            .iter()
            .map(|l| (l.cluster.clone(), l.seconds))
            .collect();
        report.windows_held = plan.held as u64;
    }
    // writing the state is the check that the bucket is writable
    store
        .save(&state)
        .await
        .map_err(|e| AppError::State(StateError::Sink(e)))?;
    info!(
        windows = starts.len(),
        from = %rfc3339(state.exported_until),
        to = %rfc3339(starts.last().map_or(state.exported_until, |w| w + tf)),
        destination = %exporter.sink.describe(),
        "export planned"
    );
    progress.planned(starts.len());
    let result = exporter
        .export(
            &starts,
            stop,
            Some(Checkpoint {
                store: &store,
                state: &mut state,
                incomplete: late_plan
                    .as_ref()
                    .map(|p| p.incomplete.clone())
                    .unwrap_or_default(),
            }),
            &mut progress,
        )
        .await;
    let mut finished = Finished::windows(result);
    if let (Some(l), Some(plan)) = (&late, &late_plan)
        && !plan.corrections.is_empty()
        && !finished.failed()
        && !stop.is_requested()
    {
        progress.phase("late data");
        let corrected = l
            .correct(
                &exporter,
                &plan.corrections,
                &mut state,
                stop,
                &mut progress,
            )
            .await;
        let saved = store.save(&state).await;
        report.windows_rewritten = match corrected {
            Ok(done) => done.windows,
            Err((done, e)) => {
                finished.export = Some(e);
                done.windows
            }
        };
        if let Err(source) = saved
            && finished.export.is_none()
        {
            let window = state.exported_until;
            finished.export = Some(ExportError::State { window, source });
        }
    }
    if let Some(t) = &telemetry
        && !finished.failed()
        && !stop.is_requested()
    {
        progress.phase("telemetry");
        // a day's instant query waits for a lagging cluster's data as its windows do
        let arrived = late_plan.as_ref().and_then(|p| p.complete_until);
        let settle = s.settle_delay.as_secs() as i64;
        let plan = plan_days(
            arrived.map_or(now, |t| now.min(t + settle)),
            &state.telemetry,
            &t.names(),
            s.backfill.as_secs() as i64,
            s.settle_delay.as_secs() as i64,
            s.retention.map(|r| r.as_secs() as i64),
        );
        info!(
            days = plan.days.len(),
            from = %plan.days.first().map_or_else(String::new, |&d| rfc3339(d)),
            prefix = %t.prefix,
            "telemetry planned"
        );
        let checkpoint = Checkpoint {
            store: &store,
            state: &mut state,
            incomplete: Default::default(),
        };
        finished
            .days(t.export(&plan.days, &plan.first, stop, Some(checkpoint)))
            .await;
    }
    let mut deleted = 0;
    let mut retention_error = None;
    if let Some(cutoff) = retention_cutoff
        && !finished.failed()
        && !stop.is_requested()
    {
        progress.phase("retention");
        match retention::apply(&exporter.sink, &exporter.prefix, &state.clusters, cutoff).await {
            Ok(r) => deleted = r.deleted,
            Err(e) => retention_error = Some(e),
        }
        if let Some(t) = &telemetry
            && retention_error.is_none()
        {
            match apply_retention(&t.sink, &t.prefix, &t.names(), cutoff).await {
                Ok(r) => deleted += r.deleted,
                Err(e) => retention_error = Some(e),
            }
        }
    }
    progress.finish();
    finished.log("run finished", deleted, began, starts.len());
    report.exported_until = Some(state.exported_until);
    report.windows = finished.summary.windows;
    report.files = finished.summary.files;
    report.bytes_written = finished.summary.bytes_out;
    report.bytes_received = finished.summary.stats.bytes_in;
    report.calls = finished.summary.stats.calls;
    if let Some(c) = &exporter.completeness {
        report.missing = c.missing_sources();
    }
    report.windows_incomplete = state.late.incomplete.values().map(|c| c.len() as u64).sum();
    finished.into_result()?;
    if stop.is_requested() {
        return Err(AppError::Export(ExportError::Interrupted(
            state.exported_until,
        )));
    }
    if let Some(e) = retention_error {
        return Err(AppError::Retention(e));
    }
    // the run metrics' last success; a failed save only loses that figure
    let succeeded = jiff::Timestamp::now().as_second();
    state.last_success = succeeded;
    match store.save(&state).await {
        Ok(()) => report.last_success = Some(succeeded),
        Err(e) => warn!(error = %e, "cannot record the run's success in the state"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    const H: i64 = 3600;
    // 2025-11-01T10:20Z
    const NOW: i64 = 1_761_955_200 + 10 * H + 20 * 60;

    fn settings(extra: &[&str]) -> Settings {
        let mut argv = vec!["storeapi-exporter"];
        argv.extend_from_slice(&crate::cli::settings::MINIMAL);
        argv.extend_from_slice(extra);
        Settings::resolve(&Cli::parse_from(argv).opts).unwrap()
    }

    #[test]
    fn first_run_backfills_to_the_last_settled_window() {
        let s = settings(&["--backfill", "1d", "--settle-delay", "10m"]);
        let p = plan_run(NOW, None, &s);
        // backfill from 2025-10-31T10:00Z; 10:20 - 10m = 10:10, so the 09:00 window is the last
        // complete one
        assert_eq!(p.state.exported_until, NOW - 20 * 60 - 24 * H);
        assert_eq!(p.windows.first(), Some(&(NOW - 20 * 60 - 24 * H)));
        assert_eq!(p.windows.last(), Some(&(NOW - 20 * 60 - H)));
        assert_eq!(p.windows.len(), 24);
        assert_eq!(p.retention_cutoff, Some(NOW - 30 * 86_400));
        assert_eq!(p.skipped_to_retention, None);
    }

    #[test]
    fn a_saved_state_resumes_and_nothing_is_due_within_the_settle_delay() {
        let s = settings(&["--settle-delay", "30m", "--batch-delay", "0"]);
        let saved = State::new(NOW - 20 * 60 - H, 3600);
        // 10:20 - 30m = 09:50: the 09:00 window is not settled yet
        assert!(plan_run(NOW, Some(saved.clone()), &s).windows.is_empty());
        let s = settings(&["--settle-delay", "10m", "--batch-delay", "0"]);
        assert_eq!(
            plan_run(NOW, Some(saved), &s).windows,
            vec![NOW - 20 * 60 - H]
        );
    }

    #[test]
    fn due_windows_wait_for_the_batch_delay_then_go_together() {
        let s = settings(&["--settle-delay", "10m", "--batch-delay", "5h"]);
        // exported up to 04:00; at 10:20 the windows 04:00 to 09:00 are due, the oldest ended
        // 5 h 20 m ago: all go
        let saved = State::new(NOW - 20 * 60 - 6 * H, 3600);
        let p = plan_run(NOW, Some(saved), &s);
        assert_eq!(p.windows.len(), 6);
        assert_eq!(p.waiting, None);
        // exported up to 05:00: the oldest due ended 4 h 20 m ago, all five wait until 11:00
        let saved = State::new(NOW - 20 * 60 - 5 * H, 3600);
        let p = plan_run(NOW, Some(saved), &s);
        assert!(p.windows.is_empty());
        assert_eq!(p.waiting, Some((5, NOW - 20 * 60 + H)));
        // the next runs every 30 minutes: each window is written at most 5 h 30 m + the
        // settle delay after it ends (the README's delay table)
        let mut exported = NOW - 20 * 60 - 4 * H;
        let mut worst = 0;
        for run in 0..48 {
            let now = NOW + run * 1800;
            let p = plan_run(now, Some(State::new(exported, 3600)), &s);
            for w in &p.windows {
                worst = worst.max(now - (w + H));
            }
            if let Some(&last) = p.windows.last() {
                exported = last + H;
            }
        }
        assert!(worst <= 5 * H + 30 * 60 + 10 * 60, "{worst}");
        assert!(worst > 5 * H, "{worst}");
    }

    #[test]
    fn at_the_defaults_every_hour_is_written_within_six_hours_in_batches() {
        // the CronJob's schedule, every 30 minutes on the hour and half hour, for two days;
        // each pod starts a little after its time
        let s = settings(&[]);
        let start = NOW - NOW.rem_euclid(H);
        let mut exported = start - 6 * H;
        let (mut worst, mut batches, mut windows) = (0, 0, 0);
        for run in 0..96 {
            let now = start + run * 1800 + 40;
            let p = plan_run(now, Some(State::new(exported, 3600)), &s);
            for w in &p.windows {
                worst = worst.max(now - (w + H));
            }
            if let Some(&last) = p.windows.last() {
                exported = last + H;
                batches += 1;
                windows += p.windows.len();
            }
        }
        assert!(worst <= 6 * H, "an hour written {worst} s after it ended");
        // the point of the delay: a request per metric covers several windows
        assert!(
            windows >= 5 * batches,
            "{windows} windows in {batches} batches"
        );
    }

    #[test]
    fn a_state_older_than_the_retention_starts_at_the_cutoff() {
        let s = settings(&["--retention-days", "2d", "--backfill", "3d"]);
        assert_eq!(s.retention, Some(Duration::from_secs(2 * 86_400)));
        let p = plan_run(NOW, None, &s);
        // the first window retention keeps whole: 2025-10-30T11:00Z
        let cut = NOW - 20 * 60 - 2 * 86_400 + H;
        let backfill_start = NOW - 20 * 60 - 3 * 86_400;
        assert_eq!(p.skipped_to_retention, Some((backfill_start, cut)));
        assert_eq!(p.state.exported_until, cut);
        assert_eq!(p.windows[0], cut);
        let keep = settings(&["--retention-days", "0", "--backfill", "3d"]);
        let p = plan_run(NOW, None, &keep);
        assert_eq!((p.skipped_to_retention, p.retention_cutoff), (None, None));
        assert_eq!(p.windows.len(), 72);
    }
}
