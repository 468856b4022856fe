//! What the process tells about itself: log setup, error chains on one line, and process
//! statistics (peak memory, children's CPU) for the summary event and the benchmark.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// The progress bar on the terminal, if one is drawn: log lines are written around it.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Draws log lines around `bar` from now on (`None`: no bar any more).
pub fn around_bar(bar: Option<indicatif::ProgressBar>) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// stderr, with the progress bar cleared while a line is written and drawn again after it,
/// so that no log line prints over the bar.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(b) => b.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Sets up `tracing` on stderr: JSON when asked, or when stderr is no terminal (in a pod). A
/// filter that does not parse logs at `info`, and says so.
pub fn init_logging(json: Option<bool>, filter: &str) {
    let json = json.unwrap_or_else(|| !std::io::stderr().is_terminal());
    let (env_filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        // colour codes only for a terminal, whatever the format: a file or a pod's log
        // collector would keep them as text
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| Stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    if let Some(e) = bad {
        tracing::warn!(log_level = filter, error = %e, "LOG_LEVEL does not parse: logging at info (use e.g. info, debug or storeapi_exporter=debug)");
    }
}

/// A value that must never reach a log or an error message: its `Debug` and `Display` print
/// `<redacted>`, so a settings struct holding it can be logged whole.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An error and its sources on one line, without repeating a message a source already holds.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

/// The process' peak resident memory (VmHWM), when the platform tells.
pub fn peak_rss_bytes() -> u64 {
    vm_hwm("self")
}

/// Peak resident memory of `/proc/<process>` (a pid, or `self`); 0 when the platform does
/// not tell.
pub fn vm_hwm(process: &str) -> u64 {
    status_bytes(process, "VmHWM")
}

/// A memory field of `/proc/<process>/status` (`VmHWM`, `VmRSS`, in kB there), in bytes; 0
/// when the process is gone or the platform does not tell.
pub fn status_bytes(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds of this process' waited-for children (`cutime + cstime` of /proc/self/stat).
pub fn children_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // fields after the command name, which may hold spaces: state is field 3, cutime 16
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on every Linux architecture the kernel exposes to user space
    (ticks(16) + ticks(17)) / 100.0
}

/// Hands the heap's free pages back to the system now rather than at the allocator's own pace
/// (a second after they were freed), once per batch of windows, so that what a batch freed
/// is not still held while the next one allocates (docs/benchmarks.md, "The allocator").
/// Takes milliseconds on a large heap: call it off the async runtime.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // every arena's (MALLCTL_ARENAS_ALL), not only the one this thread uses
        const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
        // SAFETY: a void mallctl with no old or new value; jemalloc takes its own locks
        unsafe {
            tikv_jemalloc_sys::mallctl(
                PURGE_ALL.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_never_prints_its_value() {
        let s: super::Secret = "s3cr3t".parse().unwrap();
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "<redacted> <redacted> Some(<redacted>)"
        );
        assert_eq!(s.expose(), "s3cr3t");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn status_fields_are_read_in_bytes() {
        let rss = super::status_bytes("self", "VmRSS");
        let hwm = super::status_bytes("self", "VmHWM");
        assert!(rss > 1 << 20, "{rss}");
        assert!(hwm >= rss, "{hwm} < {rss}");
        // a field name is matched whole: `VmRSS` is not `VmRS`
        assert_eq!(super::status_bytes("self", "VmRS"), 0);
        assert_eq!(super::status_bytes("no-such-process", "VmRSS"), 0);
    }
}
