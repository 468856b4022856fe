//! The run's outcome pushed to a Prometheus Pushgateway: a CronJob is a batch job, and
//! Prometheus' guidance for batch jobs is to push their last outcome so that "last success"
//! and "how far behind" can be alerted on. Every `run` pushes, pass or fail; a failed push is
//! a warning, never a failed export.
//!
//! Grouping key: job `storeapi-exporter`, `cluster` (CLUSTER_NAME, the state's folder) and
//! `shard` (`i-of-n`, `0-of-1` without sharding). A run that read its state replaces the whole
//! group (PUT), with the time of the last success the state remembers; one that failed before
//! (configuration, S3 down) only updates the metrics it has (POST), so the last success pushed
//! before stays.

use std::fmt::Write as _;
use std::time::Duration;

use tracing::{debug, warn};

use crate::observe::error_chain;

/// The job name of the grouping key.
pub const JOB: &str = "storeapi-exporter";

/// How long a push may take: never long enough to matter to the CronJob's deadline.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run reports, filled in as it goes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunReport {
    /// Wall-clock unix seconds.
    pub started_at: f64,
    pub ended_at: f64,
    pub exit_code: u8,
    /// Whether the state was read: the push then replaces the group.
    pub state_read: bool,
    /// The end of the last exported window (unix seconds), from the state.
    pub exported_until: Option<i64>,
    /// When a run last succeeded (wall-clock unix seconds), from the state.
    pub last_success: Option<i64>,
    pub windows: u64,
    pub files: u64,
    pub bytes_written: u64,
    pub bytes_received: u64,
    pub calls: u64,
    pub peak_rss_bytes: u64,
    /// Sources (external label sets) found missing, with their cluster where they have one.
    pub missing: Vec<(String, String)>,
    /// Clusters whose data lags behind the clock, with the lag in seconds (`lateness`).
    pub lagging: Vec<(String, i64)>,
    /// Windows due that wait for a lagging cluster's data.
    pub windows_held: u64,
    /// (window, cluster) pairs exported without a lagging cluster's data, still awaiting it.
    pub windows_incomplete: u64,
    /// Windows whose files the run wrote again because late data changed them.
    pub windows_rewritten: u64,
}

/// One metric family of the push.
struct Family<'a> {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, &'a str)>, f64)>,
}

impl RunReport {
    /// The metrics in the Prometheus text format, by Prometheus' naming conventions.
    pub fn render(&self) -> String {
        let one = |v: f64| vec![(Vec::new(), v)];
        let mut families = vec![
            Family {
                name: "storeapi_exporter_last_run_start_timestamp_seconds",
                help: "When the last run started (unix seconds).",
                samples: one(self.started_at),
            },
            Family {
                name: "storeapi_exporter_last_run_end_timestamp_seconds",
                help: "When the last run ended (unix seconds).",
                samples: one(self.ended_at),
            },
            Family {
                name: "storeapi_exporter_last_run_exit_code",
                help: "The last run's exit code: 0 success, 2 configuration, 3 unavailable, 4 data refused, 5 internal, 6 interrupted (README, Exit codes).",
                samples: one(f64::from(self.exit_code)),
            },
            Family {
                name: "storeapi_exporter_last_run_windows_exported",
                help: "Windows the last run exported.",
                samples: one(self.windows as f64),
            },
            Family {
                name: "storeapi_exporter_last_run_files_written",
                help: "Files the last run wrote.",
                samples: one(self.files as f64),
            },
            Family {
                name: "storeapi_exporter_last_run_written_bytes",
                help: "Bytes of the files the last run wrote.",
                samples: one(self.bytes_written as f64),
            },
            Family {
                name: "storeapi_exporter_last_run_received_bytes",
                help: "Bytes the last run received from the StoreAPI, remote read or the HTTP API.",
                samples: one(self.bytes_received as f64),
            },
            Family {
                name: "storeapi_exporter_last_run_calls",
                help: "StoreAPI, remote read or HTTP query calls the last run made.",
                samples: one(self.calls as f64),
            },
            Family {
                name: "storeapi_exporter_last_run_peak_rss_bytes",
                help: "The last run's peak resident memory.",
                samples: one(self.peak_rss_bytes as f64),
            },
        ];
        if self.state_read {
            families.push(Family {
                name: "storeapi_exporter_missing_sources",
                help: "Sources (a cluster's store, by its external labels) the last run found missing: their windows are refused until the source is back or ABSENT_CLUSTER_GRACE has passed.",
                samples: one(self.missing.len() as f64),
            });
            families.push(Family {
                name: "storeapi_exporter_source_missing",
                help: "1 for each source the last run found missing.",
                samples: self
                    .missing
                    .iter()
                    .map(|(source, cluster)| {
                        (
                            vec![
                                ("source", source.as_str()),
                                ("source_cluster", cluster.as_str()),
                            ],
                            1.0,
                        )
                    })
                    .collect(),
            });
        }
        if self.state_read {
            families.push(Family {
                name: "storeapi_exporter_cluster_lag_seconds",
                help: "How far each cluster's newest sample in the stores is behind the clock, for the clusters the last run found behind: windows wait for it up to LATE_DATA_GRACE.",
                samples: self
                    .lagging
                    .iter()
                    .map(|(cluster, lag)| (vec![("source_cluster", cluster.as_str())], *lag as f64))
                    .collect(),
            });
            families.push(Family {
                name: "storeapi_exporter_windows_held",
                help: "Windows due that the last run held for a lagging cluster's data.",
                samples: one(self.windows_held as f64),
            });
            families.push(Family {
                name: "storeapi_exporter_windows_incomplete",
                help: "Windows exported without a lagging cluster's data (LATE_DATA_GRACE passed), one per cluster, written again if it arrives within LATE_DATA_HORIZON.",
                samples: one(self.windows_incomplete as f64),
            });
            families.push(Family {
                name: "storeapi_exporter_last_run_windows_rewritten",
                help: "Windows whose files the last run wrote again because late data changed them.",
                samples: one(self.windows_rewritten as f64),
            });
        }
        if let Some(t) = self.exported_until {
            families.push(Family {
                name: "storeapi_exporter_exported_until_timestamp_seconds",
                help: "The end of the last exported window (unix seconds): now minus this is how far behind the export is.",
                samples: one(t as f64),
            });
        }
        if let Some(t) = self.last_success {
            families.push(Family {
                name: "storeapi_exporter_last_success_timestamp_seconds",
                help: "When a run last succeeded (unix seconds).",
                samples: one(t as f64),
            });
        }
        let mut out = String::new();
        for f in families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} gauge", f.name);
            for (labels, v) in f.samples {
                out.push_str(f.name);
                if !labels.is_empty() {
                    let pairs: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                        .collect();
                    let _ = write!(out, "{{{}}}", pairs.join(","));
                }
                let _ = writeln!(out, " {v}");
            }
        }
        out
    }
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The group's URL: `<base>/metrics/job/<job>/cluster@base64/<…>/shard@base64/<…>` (base64url
/// values, so any CLUSTER_NAME is a valid path segment).
pub fn group_url(base: &str, cluster: &str, shard: &str) -> String {
    format!(
        "{}/metrics/job/{JOB}/cluster@base64/{}/shard@base64/{}",
        base.trim_end_matches('/'),
        base64url(cluster.as_bytes()),
        base64url(shard.as_bytes())
    )
}

/// RFC 4648 base64url without padding (the Pushgateway accepts it in grouping keys).
fn base64url(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if input.is_empty() {
        // an empty value is one `=` in the Pushgateway's encoding
        return "=".into();
    }
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Pushes the report to the group at `url`; a failure is logged, never returned.
pub async fn push(url: &str, report: &RunReport) {
    let client = match reqwest::Client::builder().timeout(PUSH_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %error_chain(&e), "cannot build the Pushgateway client: run metrics not pushed");
            return;
        }
    };
    // a run that never read its state must not drop the last success pushed before
    let request = if report.state_read {
        client.put(url)
    } else {
        client.post(url)
    };
    let sent = request
        .header(reqwest::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(report.render())
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => debug!(url, "run metrics pushed"),
        Ok(r) => {
            warn!(url, status = %r.status(), "the Pushgateway refused the run metrics (the export itself is unaffected)")
        }
        Err(e) => {
            warn!(url, error = %error_chain(&e), "cannot push the run metrics to the Pushgateway (the export itself is unaffected)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_url_encodes_its_values() {
        assert_eq!(
            group_url("http://pg:9091/", "home", "0-of-1"),
            "http://pg:9091/metrics/job/storeapi-exporter/cluster@base64/aG9tZQ/shard@base64/MC1vZi0x"
        );
        assert_eq!(base64url(b"a/b?"), "YS9iPw");
        assert_eq!(base64url(b""), "=");
    }

    #[test]
    fn the_metrics_follow_prometheus_conventions() {
        let report = RunReport {
            started_at: 100.5,
            ended_at: 160.0,
            exit_code: 3,
            state_read: true,
            exported_until: Some(3600),
            last_success: None,
            windows: 2,
            missing: vec![("{cluster=\"b\"}".into(), "b".into())],
            ..Default::default()
        };
        let text = report.render();
        assert!(
            text.contains("storeapi_exporter_last_run_exit_code 3\n"),
            "{text}"
        );
        assert!(text.contains("storeapi_exporter_exported_until_timestamp_seconds 3600\n"));
        assert!(text.contains(
            "storeapi_exporter_source_missing{source=\"{cluster=\\\"b\\\"}\",source_cluster=\"b\"} 1\n"
        ));
        assert!(
            !text.contains("last_success"),
            "only once a run succeeded: {text}"
        );
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(line.ends_with(" gauge"), "{line}");
            assert!(!name.ends_with("_total"), "no counter: {name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name} has HELP");
        }
        // a run that never read its state has no source or backlog figures to give
        let early = RunReport {
            state_read: false,
            exported_until: None,
            ..report
        };
        assert!(!early.render().contains("missing_sources"));
    }
}
