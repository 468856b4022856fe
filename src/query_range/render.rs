//! Writing a `query_range` body byte for byte as Prometheus renders it, for Finout's files.

use super::gzip::{Gzip, Repeat, WINDOW};
use crate::model::{Series, Steps};

/// Formats a float like Go's `strconv.FormatFloat(v, 'f', -1, 64)` as Prometheus renders
/// sample values: the shortest decimal that round-trips, never an exponent.
///
/// Every output point goes through here, so it allocates nothing: `zmij` finds the shortest
/// digits on the stack, faster than `write!` with std's Grisu and its `fmt::Formatter`
/// machinery (docs/benchmarks.md, "Writing"), and its scientific form, when it picks one, is
/// rewritten as a plain decimal. Like Go, and unlike std's `Display`, zmij rounds a tie
/// between two shortest candidates to the even digit (`233115890514796.12`, as Prometheus
/// writes it; std wrote `…96.13`).
pub fn format_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let mut buf = zmij::Buffer::new();
        plain_decimal(buf.format_finite(v), out);
    }
}

/// Rewrites `zmij`'s shortest representation (`12.5`, `3.0`, `-1.5e-7`, `1e+21`) as Go's
/// `'f'` format writes the same digits (`12.5`, `3`, `-0.00000015`, `1000000000000000000000`).
fn plain_decimal(s: &str, out: &mut String) {
    let (sign, s) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s),
    };
    out.push_str(sign);
    // a byte search: `split_once`'s char searcher costs more than these few bytes
    let e = s.bytes().position(|b| b == b'e');
    let Some((mantissa, exp)) = e.map(|e| (&s[..e], &s[e + 1..])) else {
        // an integral value comes as `3.0`: Go writes `3`
        out.push_str(s.strip_suffix(".0").unwrap_or(s));
        return;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // the digits are int ++ frac, the decimal point after the first `point` of them
    let point = int.len() as i32 + exp;
    let ndigits = (int.len() + frac.len()) as i32;
    if point <= 0 {
        out.push_str("0.");
        push_zeros(-point as usize, out);
        out.push_str(int);
        out.push_str(frac);
    } else if point >= ndigits {
        out.push_str(int);
        out.push_str(frac);
        push_zeros((point - ndigits) as usize, out);
    } else if point as usize <= int.len() {
        let (head, tail) = int.split_at(point as usize);
        out.push_str(head);
        out.push('.');
        out.push_str(tail);
        out.push_str(frac);
    } else {
        let (head, tail) = frac.split_at(point as usize - int.len());
        out.push_str(int);
        out.push_str(head);
        out.push('.');
        out.push_str(tail);
    }
}

fn push_zeros(mut n: usize, out: &mut String) {
    const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    while n > 0 {
        let k = n.min(ZEROS.len());
        out.push_str(&ZEROS[..k]);
        n -= k;
    }
}

/// Writes a millisecond timestamp as seconds the way Prometheus' API does (3 fraction digits
/// when there is a fraction).
pub fn format_timestamp(t: i64, out: &mut String) {
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    push_decimal(a / 1000, out);
    if !a.is_multiple_of(1000) {
        let ms = a % 1000;
        out.push('.');
        for d in [ms / 100, ms / 10 % 10, ms % 10] {
            out.push(char::from(b'0' + d as u8));
        }
    }
}

/// `n` in decimal, without `fmt`'s machinery (every point has a timestamp).
fn push_decimal(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// A JSON string escaped like Go's encoding/json (which Prometheus' API uses): HTML-sensitive
/// characters and U+2028/U+2029 as \u escapes. `b` is text: a label name or value.
fn json_string(b: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.push(b'"');
    // label values rarely need an escape: copied whole when none does
    if b.iter().all(|&c| PLAIN[usize::from(c)]) {
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

/// The bytes a JSON string holds as they are: not a control character, a quote, a
/// backslash, an HTML-sensitive character, or the first byte of U+2028/U+2029 (0xe2, which
/// other characters share: those take the slow path, and come out unescaped).
const PLAIN: [bool; 256] = {
    let mut t = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = false;
        b += 1;
    }
    t[b'"' as usize] = false;
    t[b'\\' as usize] = false;
    t[b'<' as usize] = false;
    t[b'>' as usize] = false;
    t[b'&' as usize] = false;
    t[0xe2] = false;
    t
};

/// The body Prometheus' `query_range` returns for `series` (already sorted by labels).
#[cfg(test)]
pub(crate) fn render<'a>(
    series: impl ExactSizeIterator<Item = &'a Series>,
    steps: &Steps,
) -> String {
    let mut out = Vec::with_capacity(64 + series.len() * (200 + steps.n * 24));
    render_to(series, steps, &mut out);
    String::from_utf8(out).expect("the body is built from strings")
}

/// Where a rendered body goes, a piece at a time.
pub trait Body {
    /// `text[from..]` is new, `text[..from]` the body's text before it (the last [`WINDOW`]
    /// bytes at most), and `repeats` say where the new text repeats earlier text.
    fn take(&mut self, text: &[u8], from: usize, repeats: &[Repeat]);
}

impl Body for Vec<u8> {
    fn take(&mut self, text: &[u8], from: usize, _: &[Repeat]) {
        self.extend_from_slice(&text[from..]);
    }
}

impl Body for Gzip {
    fn take(&mut self, text: &[u8], from: usize, repeats: &[Repeat]) {
        Gzip::take(self, text, from, repeats);
    }
}

/// Writes the body Prometheus' `query_range` returns for `series` (already sorted by labels)
/// to `body`, a few series at a time, so a compressor behind it never sees the whole body.
pub fn render_to<'a>(
    series: impl Iterator<Item = &'a Series>,
    steps: &Steps,
    body: &mut impl Body,
) {
    // Each point's text is looked up, not formatted: the steps' timestamps are the file's
    // own, and most series repeat their value from step to step (requests, capacities, info
    // series' 1) or share it with series before, so a value is formatted only when it is
    // not in the text still held. A point is two copies: its step's `[<seconds>,"` and its
    // value's `<value>"]`. The text is built as bytes, and the labels read as bytes: slicing
    // either checks no character boundary.
    let mut heads = String::new();
    let mut head_at = Vec::with_capacity(steps.n + 1);
    head_at.push(0);
    for k in 0..steps.n {
        heads.push('[');
        format_timestamp(steps.at(k), &mut heads);
        heads.push_str(",\"");
        head_at.push(heads.len());
    }
    let heads = heads.as_bytes();
    let mut out = Vec::with_capacity(WINDOW + WRITE_AT + (WRITE_AT >> 2));
    out.extend_from_slice(br#"{"status":"success","data":{"resultType":"matrix","result":["#);
    // What repeats is noted as it is written, for the compressor (`gzip`): where the series
    // before wrote the same step's `[<seconds>,"`, its `{"metric":{` and `},"values":[`, and
    // where a value or a label pair was last written. Positions count from the body's start.
    let mut seen = Seen::new(steps.n);
    // about two a point, and a piece is at most WRITE_AT and a series long
    let mut repeats = Vec::with_capacity(WRITE_AT / 8);
    let (mut base, mut from) = (0, 0);
    let mut value = String::new();
    for (i, s) in series.enumerate() {
        if out.len() - from >= WRITE_AT {
            body.take(&out, from, &repeats);
            repeats.clear();
            // the window stays in front of the next piece, for the compressor to refer to
            let gone = out.len() - WINDOW.min(out.len());
            out.drain(..gone);
            base += gone;
            from = out.len();
        }
        if i > 0 {
            out.push(b',');
        }
        seen.series_start(&mut repeats, out.len(), base);
        out.extend_from_slice(SERIES);
        for (j, (k, v)) in s.labels.iter_bytes().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let at = out.len();
            json_string(k, &mut out);
            out.push(b':');
            json_string(v, &mut out);
            seen.pair(&mut repeats, &out, base, at);
        }
        seen.values_start(&mut repeats, out.len(), base);
        out.extend_from_slice(VALUES);
        debug_assert_eq!(s.values.len(), steps.n, "a value per step");
        let mut first = true;
        // the value before in this series: its bits, and where its text is (in `out`)
        let mut last: Option<(u64, usize, usize)> = None;
        for (k, v) in s.values.iter().enumerate() {
            // a step without a value keeps the head of a series before: the same text
            let Some(v) = v else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            let head = &heads[head_at[k]..head_at[k + 1]];
            let at = base + out.len();
            let then = std::mem::replace(&mut seen.heads[k], at);
            note(&mut repeats, out.len(), head.len(), at, then);
            out.extend_from_slice(head);
            let bits = v.to_bits();
            let out_at = out.len();
            let at = base + out_at;
            // A value written before, in this series or in the text still held, is copied
            // from there, not formatted again: series share values (requests, capacities).
            let again = last.filter(|&(b, _, _)| b == bits);
            let (then, copy) = match again {
                Some((_, from, len)) => (base + from, Some((from, len))),
                None => {
                    let (then, len) = seen.value(bits);
                    (
                        then,
                        (then != NOWHERE && then >= base).then(|| (then - base, len)),
                    )
                }
            };
            let len = match copy {
                Some((from, len)) => {
                    out.extend_from_within(from..from + len);
                    len
                }
                None => {
                    value.clear();
                    format_value(*v, &mut value);
                    value.push_str("\"]");
                    out.extend_from_slice(value.as_bytes());
                    value.len()
                }
            };
            debug_assert!(
                out[out_at..].ends_with(b"\"]"),
                "a value's text ends the point"
            );
            note(&mut repeats, out_at, len, at, then);
            if again.is_none() {
                seen.wrote_value(bits, at, len);
            }
            last = Some((bits, out_at, len));
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}}");
    body.take(&out, from, &repeats);
}

const SERIES: &[u8] = br#"{"metric":{"#;
const VALUES: &[u8] = br#"},"values":["#;
/// A position never written.
const NOWHERE: usize = usize::MAX;
/// Entries of the tables of values and label pairs last written (direct-mapped by hash).
const SEEN_SLOTS: usize = 1 << 10;

/// Where text was last written, by what it is.
struct Seen {
    /// Each step's `[<seconds>,"` in the series before.
    heads: Vec<usize>,
    /// The `{"metric":{` and `},"values":[` of the series before.
    series_at: usize,
    values_at: usize,
    /// A value's bits, where its text was last written, and the text's length.
    values: Box<[(u64, usize, usize)]>,
    pairs: Box<[(u64, usize)]>,
}

impl Seen {
    fn new(steps: usize) -> Self {
        Seen {
            heads: vec![NOWHERE; steps],
            series_at: NOWHERE,
            values_at: NOWHERE,
            values: vec![(0, NOWHERE, 0); SEEN_SLOTS].into_boxed_slice(),
            pairs: vec![(0, NOWHERE); SEEN_SLOTS].into_boxed_slice(),
        }
    }

    /// Notes a series' `{"metric":{`, about to be written at `out_at`.
    fn series_start(&mut self, repeats: &mut Vec<Repeat>, out_at: usize, base: usize) {
        note(repeats, out_at, SERIES.len(), base + out_at, self.series_at);
        self.series_at = base + out_at;
    }

    /// Notes a series' `},"values":[`, about to be written at `out_at`.
    fn values_start(&mut self, repeats: &mut Vec<Repeat>, out_at: usize, base: usize) {
        note(repeats, out_at, VALUES.len(), base + out_at, self.values_at);
        self.values_at = base + out_at;
    }

    /// Notes the label pair just written at `out[start..]`.
    fn pair(&mut self, repeats: &mut Vec<Repeat>, out: &[u8], base: usize, start: usize) {
        let text = &out[start..];
        let h = {
            use std::hash::Hasher as _;
            let mut h = rustc_hash::FxHasher::default();
            h.write(text);
            h.finish()
        };
        let slot = &mut self.pairs[(h >> 54) as usize % SEEN_SLOTS];
        let at = base + start;
        if slot.0 == h {
            note(repeats, start, text.len(), at, slot.1);
        }
        *slot = (h, at);
    }

    /// Where the value `bits` was last written (`NOWHERE` if not), and its text's length.
    fn value(&self, bits: u64) -> (usize, usize) {
        match self.values[Self::slot(bits)] {
            (b, at, len) if b == bits => (at, len),
            _ => (NOWHERE, 0),
        }
    }

    /// Notes the value `bits` written at `at`, `len` bytes of text.
    fn wrote_value(&mut self, bits: u64, at: usize, len: usize) {
        self.values[Self::slot(bits)] = (bits, at, len);
    }

    fn slot(bits: u64) -> usize {
        (bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize
    }
}

/// Notes that `len` bytes at `out_at` (position `at` in the body) repeat the text written at
/// `then`, if the compressor can refer back that far.
fn note(repeats: &mut Vec<Repeat>, out_at: usize, len: usize, at: usize, then: usize) {
    if then < at && at - then <= WINDOW {
        repeats.push(Repeat {
            at: out_at,
            len,
            back: at - then,
        });
    }
}

/// Text handed to the body at a time (a compressor): series are rendered into one buffer and
/// handed on once it holds this much new text, so calls into the body are few and nothing
/// sits between the two to copy the text again.
pub(crate) const WRITE_AT: usize = 256 << 10;

#[cfg(test)]
mod tests;
