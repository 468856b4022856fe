//! Pauses between attempts, for window evaluations and uploads alike, and the upload of a
//! batch of files with its retries.

use std::time::Duration;

use futures::StreamExt;
use tracing::warn;

use crate::sink::{Sink, SinkError};

/// Pauses between attempts: from 1 s, doubling up to 30 s, each jittered.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_secs(1))
    }
}

impl Backoff {
    /// The pause before the next attempt.
    pub fn next_pause(&mut self) -> Duration {
        let pause = jitter(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
        pause
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
    mut files: Vec<Upload>,
    content_type: &str,
    attempts: u32,
    concurrency: usize,
    window: &str,
) -> Result<(), SinkError> {
    let attempts = attempts.max(1);
    let mut backoff = Backoff::default();
    for attempt in 1..=attempts {
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
        if !e.is_transient() || attempt == attempts {
            return Err(e);
        }
        files = files
            .into_iter()
            .zip(written)
            .filter_map(|(f, done)| (!done).then_some(f))
            .collect();
        let pause = backoff.next_pause();
        warn!(window, attempt, left = files.len(), error = %e, retry_in_ms = pause.as_millis() as u64, "uploads failed, retrying");
        tokio::time::sleep(pause).await;
    }
    unreachable!("the last attempt returns")
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
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(j >= Duration::from_secs(1) && j <= Duration::from_secs(2));
        }
    }
}
