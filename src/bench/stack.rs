//! The whole stack's CPU and memory during a run, read from /proc for the processes whose pid
//! files the stack scripts keep (`<dir>/<name>.pid`, the pid first). The Querier is only part
//! of what an export costs: every store behind it (Prometheus' remote read under a sidecar,
//! a store gateway's index lookups) works for both sources alike.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{BenchError, io};

/// A process of the stack, named by its pid file (`prometheus-a-0`, `sidecar-b`, `query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackProcess {
    pub name: String,
    pub pid: u32,
}

/// One process' figures over one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    /// Resident memory sampled every 200 ms during the run (0 when not sampled).
    pub peak_rss_bytes: u64,
}

/// The processes of the pid files in `dir`, skipping those that are gone.
pub fn read_pid_dir(dir: &Path) -> Result<Vec<StackProcess>, BenchError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
        let path = entry.map_err(io("listing", dir))?.path();
        let (Some(name), Some("pid")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
        let Some(pid) = text
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if cpu_ticks(pid).is_some() {
            out.push(StackProcess {
                name: name.to_string(),
                pid,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// user + system CPU of a process in clock ticks (`utime + stime` of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

pub(super) fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // the command name (field 2) may hold spaces: count from its closing parenthesis, where
    // field 3 starts; utime and stime are fields 14 and 15
    let (_, rest) = stat.rsplit_once(") ")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some(tick(14)? + tick(15)?)
}

/// Resident memory of a process (`VmRSS`), 0 when gone.
pub fn rss_bytes(pid: u32) -> u64 {
    crate::observe::status_bytes(&pid.to_string(), "VmRSS")
}

/// Every process' CPU ticks now.
pub fn snapshot(procs: &[StackProcess]) -> Vec<Option<u64>> {
    procs.iter().map(|p| cpu_ticks(p.pid)).collect()
}

/// Per process, the CPU between two snapshots and the peak sampled during the run.
pub fn figures(
    procs: &[StackProcess],
    before: &[Option<u64>],
    after: &[Option<u64>],
    peaks: &[u64],
) -> BTreeMap<String, ProcessFigures> {
    procs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ticks = match (
                before.get(i).copied().flatten(),
                after.get(i).copied().flatten(),
            ) {
                (Some(b), Some(a)) => a.saturating_sub(b),
                _ => 0,
            };
            (
                p.name.clone(),
                ProcessFigures {
                    // USER_HZ is 100 on every Linux architecture the kernel exposes to user space
                    cpu_seconds: ticks as f64 / 100.0,
                    peak_rss_bytes: peaks.get(i).copied().unwrap_or(0),
                },
            )
        })
        .collect()
}

/// The kind of a stack process, its pid file's name up to the first `-`: the figures of 20
/// sidecars read as one line.
pub fn kind(name: &str) -> &str {
    name.split('-').next().unwrap_or(name)
}
