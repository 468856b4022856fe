//! Each export runs as a child process of this binary: its flags, its summary and its last
//! error, read from its JSON log.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::pipeline::EXPORT_FINISHED;

/// The summary an export logs when it ends (`EXPORT_FINISHED`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct ExportSummary {
    pub bytes_in: u64,
    pub series: u64,
    pub samples: u64,
    pub files_written: u64,
    pub duration_s: f64,
    pub peak_rss_bytes: u64,
    #[serde(default)]
    pub calls: u64,
}

/// The `EXPORT_FINISHED` event among an export's JSON log lines.
pub fn find_summary(log: &str) -> Option<ExportSummary> {
    find_summary_of(log, EXPORT_FINISHED)
}

/// The summary event with this message (`run finished` for a run).
pub fn find_summary_of(log: &str, message: &str) -> Option<ExportSummary> {
    log.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("message")?.as_str()? != message {
            return None;
        }
        // fields sit at the top level, or under "fields" without flattening
        let fields = v.get("fields").filter(|f| f.is_object()).unwrap_or(&v);
        serde_json::from_value(fields.clone()).ok()
    })
}

/// The last error an export logged, for the bench's own error.
pub(super) fn last_error(log: &str) -> String {
    log.lines()
        .rev()
        .find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v.get("level")?.as_str()? == "ERROR").then(|| {
                v.get("error")
                    .or_else(|| v.get("message"))
                    .and_then(|e| e.as_str())
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .unwrap_or_else(|| log.lines().last().unwrap_or_default().to_string())
}

/// The global options of this command line, to hand to each export: everything but the
/// subcommand, its own flags, and what every run sets itself.
pub fn forwarded_args(argv: &[String]) -> Vec<String> {
    let cli = Cli::command();
    let own: Vec<String> = cli
        .find_subcommand("bench")
        .map(|b| {
            b.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // the summary the bench reads is a JSON info event
    let set_per_run = [
        "source",
        "output-dir",
        "log-format",
        "log-level",
        "grpc-gzip",
    ];
    let takes_value = |long: &str| {
        cli.get_arguments()
            .chain(
                cli.find_subcommand("bench")
                    .into_iter()
                    .flat_map(|b| b.get_arguments()),
            )
            .find(|a| a.get_long() == Some(long))
            .is_some_and(|a| a.get_action().takes_values())
    };
    let mut out = Vec::new();
    let mut seen_subcommand = false;
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if let Some(flag) = a.strip_prefix("--") {
            let (long, inline) = match flag.split_once('=') {
                Some((l, _)) => (l, true),
                None => (flag, false),
            };
            let value = (!inline && takes_value(long)).then(|| it.next()).flatten();
            if own.iter().any(|o| o == long) || set_per_run.contains(&long) {
                continue;
            }
            out.push(a.clone());
            out.extend(value.cloned());
        } else if !seen_subcommand {
            seen_subcommand = true; // the subcommand's name
        } else {
            out.push(a.clone());
        }
    }
    out
}

pub(super) struct ChildRun {
    pub(super) summary: ExportSummary,
    pub(super) wall_seconds: f64,
    pub(super) cpu_seconds: f64,
}
