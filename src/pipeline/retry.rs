//! Retries, one shape for every loop (a batch of windows, a telemetry day, the uploads of a
//! batch of files): attempts paused by a jittered doubling backoff, an error retried only
//! when its kind may pass next time.

use std::time::Duration;

use futures::StreamExt;
use tracing::warn;

use crate::sink::{Sink, SinkError};

/// The first pause between attempts, and the longest: each doubles the one before.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Pauses between attempts: from `BACKOFF_FIRST`, doubling up to `BACKOFF_MAX`, each jittered.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(BACKOFF_FIRST)
    }
}

impl Backoff {
    /// The pause before the next attempt.
    pub fn next_pause(&mut self) -> Duration {
        let pause = jitter(self.0);
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        pause
    }

    /// The longest the pauses between `attempts` attempts add up to (jitter only shortens
    /// them): what the worst-case time to exit after a fault is made of.
    pub fn total(attempts: u32) -> Duration {
        let mut b = Backoff::default();
        (1..attempts.max(1))
            .map(|_| {
                let pause = b.0;
                b.next_pause();
                pause
            })
            .sum()
    }
}

/// Runs `attempt` until it succeeds, fails with an error `retryable` refuses, or `attempts`
/// attempts are spent; `log` tells of each failure that is retried, with the pause before the
/// next attempt. The last error comes back with the number of attempts made.
pub async fn with_retries<T, E>(
    attempts: u32,
    retryable: impl Fn(&E) -> bool,
    mut log: impl FnMut(u32, &E, Duration),
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, (E, u32)> {
    let attempts = attempts.max(1);
    let mut backoff = Backoff::default();
    let mut made = 0;
    loop {
        made += 1;
        match attempt().await {
            Ok(t) => return Ok(t),
            Err(e) if made < attempts && retryable(&e) => {
                let pause = backoff.next_pause();
                log(made, &e, pause);
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err((e, made)),
        }
    }
}

/// 50 % to 100 % of `d`, so retrying exporters do not hit a recovering Querier in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(frac)
}

/// A file to upload: its key and body.
pub type Upload = (String, Vec<u8>);

/// Uploads every `(key, body)`, `concurrency` at a time; the files not written are tried
/// again after a transient failure, up to `attempts` times in all (each upload is whole or
/// nothing, and keys are deterministic, so a retry overwrites instead of duplicating). An
/// attempt ends at its first failure: the uploads still in flight are cancelled rather than
/// each waited out, since a destination that failed one (frozen, throttling) would most likely
/// fail them all, one timeout after another. `window` names the batch in the logs.
pub async fn put_all(
    sink: &Sink,
    files: Vec<Upload>,
    content_type: &str,
    attempts: u32,
    concurrency: usize,
    window: &str,
) -> Result<(), SinkError> {
    let mut files = files;
    with_retries(
        attempts,
        |(e, _): &(SinkError, usize)| e.is_transient(),
        |attempt, (e, left), pause| {
            warn!(window, attempt, left, error = %e, retry_in_ms = pause.as_millis() as u64, "uploads failed, retrying");
        },
        async || {
            let mut written = vec![false; files.len()];
            let mut failure: Option<SinkError> = None;
            {
                let mut uploads =
                    futures::stream::iter(files.iter().enumerate().map(|(i, f)| async move {
                        let r = sink.put(&f.0, f.1.clone(), content_type).await;
                        (i, r)
                    }))
                    .buffer_unordered(concurrency.max(1));
                while let Some((i, r)) = uploads.next().await {
                    match r {
                        Ok(()) => written[i] = true,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
            }
            let Some(e) = failure else { return Ok(()) };
            // the files not written are tried again
            files = std::mem::take(&mut files)
                .into_iter()
                .zip(written)
                .filter_map(|(f, done)| (!done).then_some(f))
                .collect();
            Err((e, files.len()))
        },
    )
    .await
    .map_err(|((e, _), _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let mut b = Backoff::default();
        let bases: Vec<u64> = (0..7)
            .map(|_| {
                let base = b.0;
                let p = b.next_pause();
                assert!(p <= base && p * 2 >= base);
                base.as_secs()
            })
            .collect();
        assert_eq!(bases, vec![1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn the_pauses_add_up_to_the_doubling() {
        assert_eq!(Backoff::total(1), Duration::ZERO);
        assert_eq!(Backoff::total(5), Duration::from_secs(1 + 2 + 4 + 8));
        assert_eq!(
            Backoff::total(8),
            Duration::from_secs(1 + 2 + 4 + 8 + 16 + 30 + 30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_attempts_or_at_an_error_not_worth_retrying() {
        let mut calls = 0;
        let mut logged = Vec::new();
        let r: Result<(), (&str, u32)> = with_retries(
            3,
            |e: &&str| *e == "busy",
            |n, _, _| logged.push(n),
            async || {
                calls += 1;
                Err("busy")
            },
        )
        .await;
        assert_eq!(r, Err(("busy", 3)));
        assert_eq!((calls, logged), (3, vec![1, 2]));
        let mut calls = 0;
        let r: Result<(), (&str, u32)> = with_retries(
            3,
            |e: &&str| *e == "busy",
            |_, _, _| {},
            async || {
                calls += 1;
                Err(if calls == 1 { "busy" } else { "denied" })
            },
        )
        .await;
        assert_eq!(r, Err(("denied", 2)));
        let mut calls = 0;
        let ok = with_retries(
            5,
            |_: &()| true,
            |_, _, _| {},
            async || {
                calls += 1;
                if calls < 3 { Err(()) } else { Ok(calls) }
            },
        )
        .await;
        assert_eq!(ok, Ok(3));
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(j >= Duration::from_secs(1) && j <= Duration::from_secs(2));
        }
    }
}
