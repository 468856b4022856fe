//! Range functions and compensated sums, as Prometheus' `promql/functions.go` computes them.

use super::plan::{RangeFunc, Semantics};
use crate::model::Sample;

/// Prometheus' kahanSumInc (Neumaier's variant).
pub(super) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// A mean as Prometheus computes `avg` and `avg_over_time`: a compensated sum while it stays
/// finite, then an incremental mean (so huge values do not overflow to infinity).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct KahanMean {
    sum: f64,
    c: f64,
    mean: f64,
    count: f64,
    incremental: bool,
}

impl KahanMean {
    /// The mean of one value.
    pub(super) fn new(f: f64) -> Self {
        KahanMean {
            sum: f,
            c: 0.0,
            mean: f,
            count: 1.0,
            incremental: false,
        }
    }

    /// Adds the next value.
    pub(super) fn add(&mut self, f: f64) {
        self.count += 1.0;
        if !self.incremental {
            let (sum, c) = kahan_inc(f, self.sum, self.c);
            if !sum.is_infinite() {
                self.sum = sum;
                self.c = c;
                return;
            }
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        let q = (self.count - 1.0) / self.count;
        (self.mean, self.c) = kahan_inc(f / self.count, q * self.mean, q * self.c);
    }

    /// The mean so far.
    pub(super) fn value(&self) -> f64 {
        if self.incremental {
            self.mean + self.c
        } else {
            self.sum / self.count + self.c / self.count
        }
    }
}

pub(super) fn range_fn(
    func: RangeFunc,
    s: &[Sample],
    ts: i64,
    range: i64,
    semantics: Semantics,
) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let clamp_first = semantics.clamp_first();
    match func {
        RangeFunc::Rate => extrapolated_rate(s, ts, range, true, true, clamp_first),
        RangeFunc::Increase => extrapolated_rate(s, ts, range, true, false, clamp_first),
        RangeFunc::Delta => extrapolated_rate(s, ts, range, false, false, clamp_first),
        RangeFunc::Irate => {
            if s.len() < 2 {
                return None;
            }
            let (t0, v0) = s[s.len() - 2];
            let (t1, v1) = s[s.len() - 1];
            let interval = t1 - t0;
            if interval == 0 {
                return None;
            }
            // a counter reset keeps the last value as the increase
            let inc = if v1 < v0 { v1 } else { v1 - v0 };
            Some(inc / (interval as f64 / 1000.0))
        }
        RangeFunc::AvgOverTime => {
            let mut mean = KahanMean::new(s[0].1);
            for &(_, f) in &s[1..] {
                mean.add(f);
            }
            Some(mean.value())
        }
        RangeFunc::SumOverTime => {
            let (mut sum, mut c) = (0.0, 0.0);
            for &(_, f) in s {
                (sum, c) = kahan_inc(f, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        RangeFunc::MaxOverTime => {
            let mut m = s[0].1;
            for &(_, f) in s {
                if f > m || m.is_nan() {
                    m = f;
                }
            }
            Some(m)
        }
        RangeFunc::MinOverTime => {
            let mut m = s[0].1;
            for &(_, f) in s {
                if f < m || m.is_nan() {
                    m = f;
                }
            }
            Some(m)
        }
        RangeFunc::CountOverTime => Some(s.len() as f64),
        RangeFunc::LastOverTime => Some(s[s.len() - 1].1),
    }
}

/// Prometheus' extrapolatedRate for float samples in `(ts - range, ts]`. `clamp_first`:
/// Prometheus 2's order, where a counter's extrapolation to zero shortens the gap to the
/// range's start before that gap is compared with the 1.1-interval threshold (Prometheus 3
/// compares first, then clamps).
fn extrapolated_rate(
    s: &[Sample],
    ts: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
    clamp_first: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let range_start = ts - range;
    let range_end = ts;
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[s.len() - 1];
    let n_minus_one = (s.len() - 1) as f64;
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &s[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / n_minus_one;
    let threshold = avg * 1.1;
    let clamp = |to_start: &mut f64| {
        if is_counter && result > 0.0 && first_v >= 0.0 {
            let to_zero = sampled * (first_v / result);
            if to_zero < *to_start {
                *to_start = to_zero;
            }
        }
    };
    if clamp_first {
        clamp(&mut to_start);
    }
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if !clamp_first {
        clamp(&mut to_start);
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}
