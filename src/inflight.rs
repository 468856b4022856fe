//! The remote calls in flight, so the heartbeat can name what a stalled run waits for: which
//! peer, which endpoint, which key or stream, and for how long nothing arrived.
//!
//! One registry for the process: the heartbeat reports on the process, and every client (the
//! StoreAPI, the HTTP API, S3) registers its calls; handing a registry to each constructor
//! would add a parameter everywhere for the sake of a log line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Entry {
    peer: &'static str,
    endpoint: String,
    what: String,
    started: Instant,
    /// Milliseconds after `started` of the last progress (a frame, a body chunk).
    progressed_ms: AtomicU64,
}

fn registry() -> &'static Mutex<BTreeMap<u64, Arc<Entry>>> {
    static CALLS: OnceLock<Mutex<BTreeMap<u64, Arc<Entry>>>> = OnceLock::new();
    CALLS.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<u64, Arc<Entry>>> {
    // a panic while holding the lock leaves the map consistent (inserts and removes only)
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// A call in flight; it leaves the registry when dropped (finished, failed or cancelled).
pub struct Call {
    id: u64,
    entry: Arc<Entry>,
}

/// Registers a call to `endpoint` of `peer` (`storeapi`, `s3`, `http`) doing `what`.
pub fn start(peer: &'static str, endpoint: &str, what: String) -> Call {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let entry = Arc::new(Entry {
        peer,
        endpoint: endpoint.to_string(),
        what,
        started: Instant::now(),
        progressed_ms: AtomicU64::new(0),
    });
    lock().insert(id, entry.clone());
    Call { id, entry }
}

impl Call {
    /// Records that something arrived: the call is not stalled.
    pub fn progress(&self) {
        let ms = self.entry.started.elapsed().as_millis() as u64;
        self.entry.progressed_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        lock().remove(&self.id);
    }
}

fn idle(e: &Entry) -> Duration {
    let since = Duration::from_millis(e.progressed_ms.load(Ordering::Relaxed));
    e.started.elapsed().saturating_sub(since)
}

/// A call as the heartbeat reports it.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub peer: &'static str,
    pub endpoint: String,
    pub what: String,
    pub elapsed: Duration,
    pub idle: Duration,
}

/// The calls in flight, the longest idle first, and how many there are in all.
pub fn snapshot() -> Vec<Waiting> {
    let mut out: Vec<Waiting> = lock()
        .values()
        .map(|e| Waiting {
            peer: e.peer,
            endpoint: e.endpoint.clone(),
            what: e.what.clone(),
            elapsed: e.started.elapsed(),
            idle: idle(e),
        })
        .collect();
    out.sort_by_key(|w| std::cmp::Reverse(w.idle));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_leave_the_registry_when_dropped_and_progress_resets_idle() {
        let what = format!("test call {:?}", std::thread::current().id());
        let call = start("s3", "http://127.0.0.1:1", what.clone());
        std::thread::sleep(Duration::from_millis(30));
        let mine = |s: Vec<Waiting>| s.into_iter().find(|w| w.what == what);
        let w = mine(snapshot()).expect("registered");
        assert_eq!((w.peer, w.endpoint.as_str()), ("s3", "http://127.0.0.1:1"));
        assert!(w.idle >= Duration::from_millis(30), "{w:?}");
        call.progress();
        assert!(idle(&call.entry) < Duration::from_millis(30));
        drop(call);
        assert!(mine(snapshot()).is_none(), "removed on drop");
    }
}
