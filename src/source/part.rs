//! A result on its way from a source to the pipeline, and how the source learns that the
//! pipeline rendered it.
//!
//! Memory follows a file because a source builds its next results only once the ones it sent
//! are rendered and out of memory: every part carries a [`Rendered`] ticket of its source's
//! [`RenderGate`], the pipeline drops the ticket after rendering, and the gate opens once
//! every ticket is dropped.

use tokio::sync::mpsc;

use super::SourceError;
use crate::model::{Series, Steps};

/// One catalog entry's result in one window, for one cluster or for all of them: what the
/// pipeline writes as soon as it arrives.
#[derive(Debug)]
pub struct Part {
    /// The window's start, seconds.
    pub window: i64,
    /// The catalog entry.
    pub entry: usize,
    pub steps: Steps,
    /// Sorted by labels.
    pub series: Vec<Series>,
    /// Dropped by the pipeline once the series are rendered (or given up), never kept.
    pub rendered: Rendered,
}

/// Where a source sends its parts; bounded, so a slow writer holds the source back.
pub type Parts = mpsc::Sender<Part>;

/// Sends a part; a writer that stopped ends the evaluation (its own error is the one to report).
pub async fn send(parts: &Parts, part: Part) -> Result<(), SourceError> {
    parts.send(part).await.map_err(|_| SourceError::WriterGone)
}

/// [`send`] from the blocking pool.
pub fn send_blocking(parts: &Parts, part: Part) -> Result<(), SourceError> {
    parts
        .blocking_send(part)
        .map_err(|_| SourceError::WriterGone)
}

/// A part's ticket of its source's [`RenderGate`]: dropping it says the part is rendered.
#[derive(Debug, Default)]
pub struct Rendered {
    // held, never sent on: the gate opens once every clone is dropped
    _ticket: Option<mpsc::Sender<()>>,
}

impl Rendered {
    /// A ticket nobody waits for (a source that holds nothing back).
    pub fn untracked() -> Self {
        Rendered { _ticket: None }
    }

    /// Says the part is rendered: its series are out of memory.
    pub fn done(self) {}
}

/// Opens once every ticket it gave out is dropped.
pub struct RenderGate {
    tickets: mpsc::Sender<()>,
    all_dropped: mpsc::Receiver<()>,
}

impl Default for RenderGate {
    fn default() -> Self {
        // nothing is ever sent: the channel only tells when the last sender is gone
        let (tickets, all_dropped) = mpsc::channel(1);
        RenderGate {
            tickets,
            all_dropped,
        }
    }
}

impl RenderGate {
    /// A ticket for one part.
    pub fn ticket(&self) -> Rendered {
        Rendered {
            _ticket: Some(self.tickets.clone()),
        }
    }

    /// Waits until every part it gave a ticket to is rendered or given up (with its batch,
    /// whose error is then reported); call it on the blocking pool.
    pub fn wait_blocking(self) {
        let RenderGate {
            tickets,
            mut all_dropped,
        } = self;
        drop(tickets);
        let _ = all_dropped.blocking_recv();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_once_every_ticket_is_dropped() {
        let gate = RenderGate::default();
        let (a, b) = (gate.ticket(), gate.ticket());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            gate.wait_blocking();
            tx.send(()).unwrap();
        });
        a.done();
        let early = rx.recv_timeout(std::time::Duration::from_millis(50));
        assert!(early.is_err(), "a ticket is still held");
        drop(b);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("open once both are dropped");
        waiter.join().unwrap();
        // a gate that gave no ticket opens at once
        RenderGate::default().wait_blocking();
    }
}
