//! Decoding: a bit reader over the chunk bytes, a sample-by-sample iterator (the reference),
//! and the fast whole-chunk decoder the engine uses, checked against each other by proptest.

use super::ChunkError;
use crate::model::Sample;

/// Reads bits most significant first from a byte slice. Every read is one unaligned
/// big-endian load at the current bit position: no buffer to refill.
struct BitReader<'a> {
    data: &'a [u8],
    // position and length in bits
    pos: usize,
    len: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            len: data.len() * 8,
        }
    }

    /// The next 64 bits from the current position (zeros past the end); at least 57 of them
    /// are real when that many remain.
    #[inline(always)]
    fn peek(&self) -> u64 {
        let byte = self.pos >> 3;
        let word = match self.data.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().unwrap()),
            None => {
                let mut b = [0u8; 8];
                let rest = &self.data[byte.min(self.data.len())..];
                b[..rest.len()].copy_from_slice(rest);
                u64::from_be_bytes(b)
            }
        };
        word << (self.pos & 7)
    }

    /// Bits left.
    #[inline(always)]
    fn remaining(&self) -> usize {
        self.len - self.pos
    }

    #[inline(always)]
    fn skip(&mut self, n: u32) {
        self.pos += n as usize;
    }

    /// Reads n bits, 1 <= n <= 57.
    #[inline(always)]
    fn bits(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=57).contains(&n));
        if self.remaining() < n as usize {
            return None;
        }
        let v = self.peek() >> (64 - n);
        self.pos += n as usize;
        Some(v)
    }

    /// Reads n bits, 1 <= n <= 64.
    #[inline(always)]
    fn bits_wide(&mut self, n: u32) -> Option<u64> {
        if n <= 57 {
            self.bits(n)
        } else {
            let hi = self.bits(n - 32)?;
            let lo = self.bits(32)?;
            Some((hi << 32) | lo)
        }
    }

    fn uvarint(&mut self) -> Option<u64> {
        // A chunk's two varints (its first timestamp in milliseconds, 6 bytes, and the first
        // delta) fit one load, whose first 57 bits are real where 64 remain: up to 7 bytes
        // are read from it, longer ones byte by byte.
        if self.remaining() >= 64 {
            let word = self.peek();
            let mut x = 0u64;
            for i in 0..7 {
                let b = (word >> (56 - 8 * i)) & 0xff;
                x |= (b & 0x7f) << (7 * i);
                if b < 0x80 {
                    self.pos += 8 * (i + 1);
                    return Some(x);
                }
            }
        }
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..10 {
            let b = self.bits(8)?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return None; // overflows 64 bits
                }
                return Some(x | (b << shift));
            }
            x |= (b & 0x7f) << shift;
            shift += 7;
        }
        None
    }

    fn varint(&mut self) -> Option<i64> {
        let ux = self.uvarint()?;
        let x = (ux >> 1) as i64;
        Some(if ux & 1 != 0 { !x } else { x })
    }

    /// The delta-of-delta of the next timestamp, `None` when the chunk ends first.
    #[inline(always)]
    fn dod(&mut self) -> Option<i64> {
        // The prefix is 0, 10, 110, 1110 or 1111: count its leading ones at once; prefix and
        // payload (at most 4 + 20 bits) come from one load.
        let word = self.peek();
        let ones = (!word).leading_zeros().min(4);
        if ones == 0 {
            if self.remaining() < 1 {
                return None;
            }
            self.skip(1);
            return Some(0);
        }
        if ones == 4 {
            if self.remaining() < 4 {
                return None;
            }
            self.skip(4);
            return Some(self.bits_wide(64)? as i64);
        }
        let size = 11 + 3 * ones; // 14, 17 or 20 bits
        let used = ones + 1 + size;
        if self.remaining() < used as usize {
            return None;
        }
        self.skip(used);
        let mut bits = ((word << (ones + 1)) >> (64 - size)) as i64;
        // Two's complement in `size` bits. Prometheus tests `>` (not `>=`) here, so the
        // pattern 1 << (size-1) stands for the positive value; so do we.
        if bits > (1 << (size - 1)) {
            bits -= 1 << size;
        }
        Some(bits)
    }

    /// Applies the next XOR-encoded value to `v`.
    #[inline(always)]
    fn xor_value(
        &mut self,
        v: &mut u64,
        leading: &mut u32,
        trailing: &mut u32,
        n: u16,
        total: u16,
    ) -> Result<(), ChunkError> {
        let trunc = ChunkError::Truncated(n, total);
        // control bits: 0 same value, 10 reuse the window, 11 a new window (5 bits of leading
        // zeros, 6 of significant bits); the payload follows, from the same load when it fits
        let word = self.peek();
        let top = word >> 62;
        if top < 2 {
            if self.remaining() < 1 {
                return Err(trunc);
            }
            self.skip(1);
            return Ok(());
        }
        let (head, sig) = if top == 0b10 {
            (2, 64 - *leading - *trailing)
        } else {
            let header = ((word << 2) >> 53) as u32;
            let lead = header >> 6;
            // 0 significant bits would be no change: it encodes 64
            let sig = match header & 63 {
                0 => 64,
                s => s,
            };
            if lead + sig > 64 {
                return Err(ChunkError::Corrupt(
                    n,
                    "leading and significant bits exceed 64",
                ));
            }
            *leading = lead;
            *trailing = 64 - lead - sig;
            (13, sig)
        };
        if sig == 0 {
            return Err(ChunkError::Corrupt(n, "value reuses a window of 0 bits"));
        }
        if self.remaining() < (head + sig) as usize {
            return Err(trunc);
        }
        let bits = if head + sig <= 57 {
            self.skip(head + sig);
            (word << head) >> (64 - sig)
        } else {
            self.skip(head);
            self.bits_wide(sig).ok_or(trunc)?
        };
        *v ^= bits << *trailing;
        Ok(())
    }
}

/// Decodes an XOR chunk sample by sample without allocating.
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u32,
    trailing: u32,
}

impl<'a> XorIter<'a> {
    /// Starts decoding `data`, the chunk bytes including the 2-byte sample count.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        if data.len() < 2 {
            return Err(ChunkError::Truncated(0, 0));
        }
        let total = u16::from_be_bytes([data[0], data[1]]);
        Ok(XorIter {
            r: BitReader::new(&data[2..]),
            total,
            read: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        })
    }

    /// The number of samples the chunk header announces.
    pub fn len(&self) -> u16 {
        self.total
    }

    /// Whether the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The next sample, `Ok(None)` after the last one.
    #[inline]
    pub fn next_sample(&mut self) -> Result<Option<Sample>, ChunkError> {
        if self.read >= self.total {
            return Ok(None);
        }
        let truncated = ChunkError::Truncated(self.read, self.total);
        match self.read {
            0 => {
                self.t = self.r.varint().ok_or(truncated)?;
                self.v = self.r.bits_wide(64).ok_or(truncated)?;
            }
            n => {
                // the second timestamp is a plain delta, later ones a delta of deltas
                self.t_delta = if n == 1 {
                    self.r.uvarint().ok_or(truncated)? as i64
                } else {
                    let dod = self.r.dod().ok_or(truncated)?;
                    self.t_delta.wrapping_add(dod)
                };
                self.t = self.t.wrapping_add(self.t_delta);
                self.r.xor_value(
                    &mut self.v,
                    &mut self.leading,
                    &mut self.trailing,
                    self.read,
                    self.total,
                )?;
            }
        }
        self.read += 1;
        Ok(Some((self.t, f64::from_bits(self.v))))
    }
}

/// Where a sample ends in a chunk: its last bit's position in the bit stream (after the
/// 2-byte count) and the value window the decoder holds after it. A chunk cut after that
/// sample, or re-encoded up to it with the same window, goes on with the very same bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    pub end: u32,
    pub leading: u8,
    pub trailing: u8,
}

/// What a decoder notes per sample: nothing on the hot path, `Mark`s where a chunk is cut.
trait Marks {
    /// Whether the sample at `t` is kept (appended, and marked).
    fn keep(&mut self, t: i64) -> bool;
    fn mark(&mut self, end: usize, leading: u32, trailing: u32);
}

impl Marks for () {
    #[inline(always)]
    fn keep(&mut self, _: i64) -> bool {
        true
    }

    #[inline(always)]
    fn mark(&mut self, _: usize, _: u32, _: u32) {}
}

/// Marks of the samples from `from` on; `skipped` counts those before.
struct MarksFrom<'a> {
    marks: &'a mut Vec<Mark>,
    from: i64,
    skipped: usize,
}

impl Marks for MarksFrom<'_> {
    #[inline(always)]
    fn keep(&mut self, t: i64) -> bool {
        let keep = t >= self.from;
        self.skipped += usize::from(!keep);
        keep
    }

    #[inline(always)]
    fn mark(&mut self, end: usize, leading: u32, trailing: u32) {
        self.marks.push(Mark {
            end: end as u32,
            leading: leading as u8,
            trailing: trailing as u8,
        });
    }
}

/// Decodes a whole chunk, appending to `out`: the fast path. Equivalent to draining an
/// [`XorIter`], with the decoder state in locals and the two header samples peeled off the
/// loop, which halves the instructions per sample.
pub fn decode_into(data: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    decode_marking(data, i64::MAX, out, &mut ()).map(drop)
}

/// `decode_into` that stops before the first sample after `maxt`: a query over a range ending
/// there reads no further, and neither does Prometheus' chunk iterator under PromQL, so bits
/// past it are neither decoded nor checked. `true` when it stopped there.
pub fn decode_until(data: &[u8], maxt: i64, out: &mut Vec<Sample>) -> Result<bool, ChunkError> {
    decode_marking(data, maxt, out, &mut ())
}

/// `decode_into` that also appends each sample's `Mark` to `marks`.
pub fn decode_marked(
    data: &[u8],
    out: &mut Vec<Sample>,
    marks: &mut Vec<Mark>,
) -> Result<(), ChunkError> {
    decode_marked_from(data, i64::MIN, out, marks).map(drop)
}

/// `decode_marked` keeping only the samples from `from` on (a chunk cut at a range's start
/// needs nothing of the samples before it, and most of a chunk crossing a window's lookback
/// lies before it): returns how many were decoded before them.
pub fn decode_marked_from(
    data: &[u8],
    from: i64,
    out: &mut Vec<Sample>,
    marks: &mut Vec<Mark>,
) -> Result<usize, ChunkError> {
    let mut keep = MarksFrom {
        marks,
        from,
        skipped: 0,
    };
    decode_marking(data, i64::MAX, out, &mut keep)?;
    Ok(keep.skipped)
}

#[inline(always)]
fn decode_marking<M: Marks>(
    data: &[u8],
    maxt: i64,
    out: &mut Vec<Sample>,
    marks: &mut M,
) -> Result<bool, ChunkError> {
    if data.len() < 2 {
        return Err(ChunkError::Truncated(0, 0));
    }
    let total = u16::from_be_bytes([data[0], data[1]]);
    if total == 0 {
        return Ok(false);
    }
    out.reserve(total as usize);
    let mut r = BitReader::new(&data[2..]);
    let trunc = |n: u16| ChunkError::Truncated(n, total);
    let mut t = r.varint().ok_or(trunc(0))?;
    let mut v = r.bits_wide(64).ok_or(trunc(0))?;
    let (mut leading, mut trailing) = (0u32, 0u32);
    if t > maxt {
        return Ok(true);
    }
    if marks.keep(t) {
        out.push((t, f64::from_bits(v)));
        marks.mark(r.pos, leading, trailing);
    }
    if total == 1 {
        return Ok(false);
    }
    let mut delta = r.uvarint().ok_or(trunc(1))? as i64;
    t = t.wrapping_add(delta);
    if t > maxt {
        return Ok(true);
    }
    r.xor_value(&mut v, &mut leading, &mut trailing, 1, total)?;
    if marks.keep(t) {
        out.push((t, f64::from_bits(v)));
        marks.mark(r.pos, leading, trailing);
    }
    for n in 2..total {
        let dod = r.dod().ok_or(trunc(n))?;
        delta = delta.wrapping_add(dod);
        t = t.wrapping_add(delta);
        if t > maxt {
            return Ok(true);
        }
        r.xor_value(&mut v, &mut leading, &mut trailing, n, total)?;
        if marks.keep(t) {
            out.push((t, f64::from_bits(v)));
            marks.mark(r.pos, leading, trailing);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::BitReader;
    use proptest::prelude::*;

    /// `x` as a varint after `skip` bits of ones, followed by `tail` bytes of ones.
    fn bits_of(x: u64, skip: u32, tail: usize) -> (Vec<u8>, usize) {
        let mut bits: Vec<bool> = vec![true; skip as usize];
        let mut v = x;
        loop {
            let b = (v & 0x7f) as u8 | if v >= 0x80 { 0x80 } else { 0 };
            bits.extend((0..8).rev().map(|i| b >> i & 1 == 1));
            v >>= 7;
            if b < 0x80 {
                break;
            }
        }
        let end = bits.len();
        bits.extend(std::iter::repeat_n(true, tail * 8));
        let bytes = bits
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |a, (i, &b)| a | u8::from(b) << (7 - i))
            })
            .collect();
        (bytes, end)
    }

    proptest! {
        #[test]
        fn varints_are_read_at_every_offset_whatever_follows_them(
            x in prop_oneof![0u64..128, 0u64..1 << 21, 0u64..1 << 49, any::<u64>()],
            skip in 0u32..8,
            tail in 0usize..10,
        ) {
            let (bytes, end) = bits_of(x, skip, tail);
            let mut r = BitReader::new(&bytes);
            if skip > 0 {
                r.bits(skip).unwrap();
            }
            prop_assert_eq!(r.uvarint(), Some(x));
            prop_assert_eq!(r.pos, end);
            // cut inside it: no value
            let mut short = BitReader::new(&bytes[..end.div_ceil(8) - 1]);
            if skip > 0 {
                short.bits(skip).unwrap();
            }
            prop_assert_eq!(short.uvarint(), None);
        }
    }
}
