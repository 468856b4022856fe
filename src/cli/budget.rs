//! The worst-case time to exit after each kind of fault, for a set of settings: what the
//! README's fault table and the CronJob's deadlines are derived from. Each timing comes from
//! the component that owns it (retry pauses, the S3 SDK's backoff, the readiness probe).

use std::time::Duration;

use super::settings::Settings;
use crate::pipeline::retry::Backoff;
use crate::sink::S3Config;
use crate::sink::s3::MAX_BACKOFF;
use crate::source::http::{READINESS_ATTEMPTS, READINESS_PAUSE, READINESS_TIMEOUT};

/// How long after a shutdown was abandoned the process may take to log and exit; the last
/// resort against a phase that ignores the stop (preflight, state, retention).
pub const EXIT_MARGIN: Duration = Duration::from_secs(5);

/// The longest a run takes, from the moment a peer stops answering, to exit with its code:
/// every retry waits out its timeout. The README's fault table and the CronJob's deadlines are
/// derived from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultBudget {
    /// The StoreAPI frozen or unreachable: each window attempt waits the idle timeout (or the
    /// connect timeout), then the pauses between attempts.
    pub storeapi: Duration,
    /// The HTTP API frozen (`--source http`): each attempt waits the whole QUERY_TIMEOUT.
    pub http: Duration,
    /// The readiness probe unanswered.
    pub readiness: Duration,
    /// S3 frozen: each of a window's upload attempts waits one operation (its attempts, each
    /// up to the attempt timeout, capped by the operation timeout).
    pub s3: Duration,
    /// SIGTERM or SIGINT: the window in flight's time to finish, then the exit.
    pub shutdown: Duration,
}

impl FaultBudget {
    /// The longest of them.
    pub fn worst(&self) -> Duration {
        [
            self.storeapi,
            self.http,
            self.readiness,
            self.s3,
            self.shutdown,
        ]
        .into_iter()
        .max()
        .unwrap_or_default()
    }
}

impl Settings {
    /// The worst-case time to exit after a fault, for these settings.
    pub fn fault_budget(&self, s3: Option<&S3Config>) -> FaultBudget {
        let r = self.attempts.max(1);
        let pauses = Backoff::total(r);
        let storeapi = self.limits.idle_timeout.max(self.limits.connect_timeout) * r + pauses;
        let http = self.limits.timeout * r + pauses;
        let readiness = READINESS_TIMEOUT.min(self.limits.timeout) * READINESS_ATTEMPTS
            + READINESS_PAUSE * (READINESS_ATTEMPTS - 1);
        let s3 = s3.map_or(Duration::ZERO, |c| {
            let m = c.max_attempts.max(1);
            let op = (c.attempt_timeout * m + MAX_BACKOFF * (m - 1)).min(c.operation_timeout);
            op * r + pauses
        });
        FaultBudget {
            storeapi,
            http,
            readiness,
            s3,
            shutdown: self.shutdown_timeout + EXIT_MARGIN,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Destination};

    /// A number after `key:` in a manifest.
    fn manifest_number(yaml: &str, key: &str) -> u64 {
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in deploy/base/cronjob.yaml"))
    }

    #[test]
    fn the_default_fault_budget_fits_the_cronjob_deadlines() {
        let s = Settings::resolve(
            &Cli::parse_from([
                "storeapi-exporter",
                "--store",
                "http://q:10901",
                "--s3-prefix",
                "p",
                "--cluster-name",
                "c",
                "--s3-bucket",
                "b",
            ])
            .opts,
        )
        .unwrap();
        let Destination::S3(s3) = &s.destination else {
            return; // OUTPUT_DIR set in the environment
        };
        let b = s.fault_budget(Some(s3));
        // the README's fault table quotes these
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(b.storeapi), 5 * 60 + 15);
        assert_eq!(secs(b.http), 5 * 120 + 15);
        assert_eq!(secs(b.s3), 5 * 120 + 15);
        assert_eq!(secs(b.readiness), 34);
        assert_eq!(secs(b.shutdown), 25);
        let cronjob = include_str!("../../deploy/base/cronjob.yaml");
        let deadline = manifest_number(cronjob, "activeDeadlineSeconds:");
        let grace = manifest_number(cronjob, "terminationGracePeriodSeconds:");
        assert!(
            cronjob.contains("schedule: \"*/30 * * * *\""),
            "the schedule the deadline is derived from"
        );
        assert!(
            secs(b.worst()) < deadline,
            "a fault in the first {}s of a run ends it with its own exit code before the deadline",
            deadline - secs(b.worst())
        );
        assert!(
            secs(b.shutdown) <= grace,
            "SIGTERM exits within the grace period"
        );
        assert!(
            deadline + grace < 30 * 60,
            "a run ends before the next slot"
        );
    }
}
