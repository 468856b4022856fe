//! The shared vocabulary of every stage: samples, label sets, evaluation steps and result
//! series. It imports nothing else of the crate, so any stage may use it.

pub mod labels;

pub use labels::{Labels, METRIC_NAME, MatchKind, Matcher, anchored};

/// One float sample: milliseconds since the epoch and the value.
pub type Sample = (i64, f64);

/// The NaN Prometheus writes as a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a staleness marker (a NaN with exactly these bits; other NaNs are values).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Evaluation steps of a window: `start`, `start + step`, … (`n` of them), milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steps {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Steps {
    /// The last evaluation timestamp.
    pub fn end(&self) -> i64 {
        self.start + self.step * (self.n as i64 - 1)
    }

    /// The `i`-th evaluation timestamp.
    pub fn at(&self, i: usize) -> i64 {
        self.start + self.step * i as i64
    }
}

/// A result series: labels and one optional value per step.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

/// Everything one window produced: per catalog metric, in catalog order, its name and series.
pub type WindowResult = Vec<(String, Vec<Series>)>;
