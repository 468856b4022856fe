//! Pauses between attempts, for window evaluations and uploads alike.

use std::time::Duration;

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
